/**
 * The write-ahead log of `durable` tenants (§3.9): events are appended and group-fsync'd before
 * the answer. A closed segment is deleted once each of its events is settled in every target.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeRecord, parseSegmentName, scanRecords, segmentName, WAL_HEADER } from './framing.js';

interface SegmentState {
  outstanding: number;
  closed: boolean;
  bytes: number;
}

interface Waiter {
  seq: number;
  targets: number;
  resolve: (settle: () => void) => void;
  reject: (err: Error) => void;
}

export class Wal {
  private readonly segments = new Map<number, SegmentState>();
  private seq = 0;
  private handle: FileHandle | undefined;
  private pending: Buffer[] = [];
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly segmentBytes: number,
    private readonly fsyncMs: number,
    private readonly onFsync: (seconds: number) => void = () => undefined,
  ) {}

  /** Reads every segment left by the last run; each record must then be settled via `settleFor`. */
  recover(): { seq: number; records: Buffer[] }[] {
    mkdirSync(this.dir, { recursive: true });
    const seqs = readdirSync(this.dir)
      .map(parseSegmentName)
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
    const out = seqs.map((seq) => {
      const buf = readFileSync(join(this.dir, segmentName(seq)));
      const records = buf.subarray(0, WAL_HEADER.length).equals(WAL_HEADER)
        ? scanRecords(buf.subarray(WAL_HEADER.length), WAL_HEADER.length).records.map((r) =>
            Buffer.from(r),
          )
        : [];
      this.segments.set(seq, { outstanding: 0, closed: true, bytes: buf.length });
      return { seq, records };
    });
    this.seq = (seqs.at(-1) ?? -1) + 1;
    return out;
  }

  /** A settle callback for a recovered record of segment `seq` going to `targets` sinks. */
  settleFor(seq: number, targets: number): () => void {
    const state = this.segments.get(seq);
    if (state === undefined) return () => undefined;
    state.outstanding += targets;
    return () => this.settle(seq);
  }

  /** Deletes recovered segments nobody holds (records for tenants that no longer exist). */
  sweep(): void {
    for (const [seq, state] of this.segments) {
      if (state.closed && state.outstanding <= 0) {
        this.segments.delete(seq);
        rmSync(join(this.dir, segmentName(seq)), { force: true });
      }
    }
  }

  get bytes(): number {
    let total = 0;
    for (const state of this.segments.values()) total += state.bytes;
    return total;
  }

  /** Appends; resolves after the group fsync with a callback to call once per target. */
  append(payload: Buffer, targets: number): Promise<() => void> {
    return new Promise((resolve, reject) => {
      this.pending.push(encodeRecord(payload));
      this.waiters.push({ seq: -1, targets, resolve, reject });
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.chain = this.chain.then(() => this.flush());
      }, this.fsyncMs);
    });
  }

  private async flush(): Promise<void> {
    const buffers = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    if (buffers.length === 0) return;
    const started = process.hrtime.bigint();
    try {
      let state = this.segments.get(this.seq);
      if (this.handle === undefined || state === undefined) {
        this.handle = await open(join(this.dir, segmentName(this.seq)), 'w');
        await this.handle.write(WAL_HEADER);
        state = { outstanding: 0, closed: false, bytes: WAL_HEADER.length };
        this.segments.set(this.seq, state);
      }
      const { bytesWritten } = await this.handle.writev(buffers);
      await this.handle.sync();
      this.onFsync(Number(process.hrtime.bigint() - started) / 1e9);
      state.bytes += bytesWritten;
      const seq = this.seq;
      for (const waiter of waiters) {
        state.outstanding += waiter.targets;
        waiter.resolve(() => this.settle(seq));
      }
      if (state.bytes >= this.segmentBytes) await this.rotate();
    } catch (err) {
      for (const waiter of waiters) waiter.reject(err as Error);
    }
  }

  private async rotate(): Promise<void> {
    const state = this.segments.get(this.seq);
    await this.handle?.close();
    this.handle = undefined;
    if (state !== undefined) state.closed = true;
    const closedSeq = this.seq;
    this.seq += 1;
    if (state !== undefined && state.outstanding <= 0) await this.remove(closedSeq);
  }

  private settle(seq: number): void {
    const state = this.segments.get(seq);
    if (state === undefined) return;
    state.outstanding -= 1;
    if (state.closed && state.outstanding <= 0) {
      this.remove(seq).catch(() => undefined);
    }
  }

  private async remove(seq: number): Promise<void> {
    this.segments.delete(seq);
    await rm(join(this.dir, segmentName(seq)), { force: true });
  }

  /** Shutdown: commits what is pending, closes the open segment and deletes settled ones. */
  async close(): Promise<number> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.chain = this.chain.then(() => this.flush());
    await this.chain;
    await this.rotate();
    let left = 0;
    for (const [seq, state] of [...this.segments]) {
      if (state.outstanding <= 0) await this.remove(seq);
      else left += state.outstanding;
    }
    return left;
  }
}
