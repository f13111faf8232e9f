/**
 * A sink's crash-safe disk spool (§3.9): FIFO segments of framed records, group-committed with
 * fsync, a cursor persisted after each acked batch, and start-up recovery that truncates a torn
 * tail and quarantines the rest of a segment after a bad record.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeRecord,
  parseSegmentName,
  RECORD_OVERHEAD,
  scanRecords,
  segmentName,
  SPOOL_HEADER,
} from './framing.js';

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  segmentBytes: number;
  fsyncMs: number;
}

export interface RecoveryReport {
  segments: number;
  records: number;
  corrupt: number;
}

interface Position {
  segment: number;
  offset: number;
}

export interface SpoolBatch {
  records: Buffer[];
  end: Position;
}

interface PendingRecord {
  bytes: Buffer;
  done?: (err?: Error) => void;
}

const HEADER = SPOOL_HEADER.length;

export class Spool {
  /** Sizes on disk of each segment, by sequence number, oldest first. */
  private readonly segments = new Map<number, number>();
  private cursor: Position = { segment: 0, offset: HEADER };
  private tail: FileHandle | undefined;
  private tailSeq = 0;
  private pending: PendingRecord[] = [];
  private pendingBytes = 0;
  private writingBytes = 0;
  private unread = 0;
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private writeFailed = false;
  corruptRecords = 0;

  constructor(readonly options: SpoolOptions) {}

  /** Scans every segment (sync: runs once before the listener opens). */
  recover(): RecoveryReport {
    mkdirSync(this.options.dir, { recursive: true });
    const seqs = readdirSync(this.options.dir)
      .map(parseSegmentName)
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
    this.cursor = this.readCursor() ?? { segment: seqs[0] ?? 0, offset: HEADER };
    let records = 0;
    let corrupt = 0;
    seqs.forEach((seq, index) => {
      const path = this.path(seq);
      const buf = readFileSync(path);
      if (buf.length < HEADER || !buf.subarray(0, HEADER).equals(SPOOL_HEADER)) {
        corrupt += this.quarantine(seq, 0, buf);
        writeFileSync(path, SPOOL_HEADER);
        this.segments.set(seq, HEADER);
        return;
      }
      const scan = scanRecords(buf.subarray(HEADER), HEADER);
      if (scan.stop !== 'end') {
        corrupt += 1;
        if (scan.stop === 'corrupt' || index < seqs.length - 1) this.quarantine(seq, scan.end, buf);
        truncateSync(path, scan.end);
      }
      this.segments.set(seq, scan.end);
      if (seq > this.cursor.segment) records += scan.records.length;
      else if (seq === this.cursor.segment)
        records += countFrom(buf.subarray(0, scan.end), this.cursor.offset);
    });
    if (!this.segments.has(this.cursor.segment))
      this.cursor = { segment: seqs[0] ?? 0, offset: HEADER };
    this.tailSeq = seqs.at(-1) ?? this.cursor.segment;
    this.unread = records;
    return { segments: seqs.length, records, corrupt };
  }

  private quarantine(seq: number, offset: number, buf: Buffer): number {
    const dir = join(this.options.dir, 'corrupt');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${seq}.${offset}.bad`), buf.subarray(offset));
    return 1;
  }

  private readCursor(): Position | undefined {
    try {
      const parsed = JSON.parse(
        readFileSync(join(this.options.dir, 'cursor.json'), 'utf8'),
      ) as Position;
      if (Number.isSafeInteger(parsed.segment) && Number.isSafeInteger(parsed.offset))
        return parsed;
    } catch {
      // No cursor yet: replay from the first segment.
    }
    return undefined;
  }

  private path(seq: number): string {
    return join(this.options.dir, segmentName(seq));
  }

  /** Bytes on disk plus bytes waiting for the next group commit. */
  get bytes(): number {
    let total = this.pendingBytes + this.writingBytes;
    for (const size of this.segments.values()) total += size;
    return total;
  }

  get segmentCount(): number {
    return this.segments.size;
  }

  get full(): boolean {
    return this.writeFailed || this.bytes >= this.options.maxBytes;
  }

  /** Records not yet acked, on disk or pending. */
  get hasData(): boolean {
    return this.unread > 0;
  }

  get records(): number {
    return this.unread;
  }

  /**
   * Queues one record for the next group commit. Returns false when the spool is full; `done`
   * runs once the record is fsync'd (or with the error if it could not be written).
   */
  append(payload: Buffer, done?: (err?: Error) => void): boolean {
    if (this.full) return false;
    const bytes = encodeRecord(payload);
    this.pending.push({ bytes, done });
    this.pendingBytes += bytes.length;
    this.unread += 1;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush().catch(() => undefined);
    }, this.options.fsyncMs);
    return true;
  }

  /** Writes and fsyncs everything pending; serialised, so records keep their order. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writePending());
    return this.flushing;
  }

  private async writePending(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    // The bytes being written still count until the segment sizes include them.
    this.writingBytes = this.pendingBytes;
    this.pendingBytes = 0;
    let index = 0;
    try {
      while (index < batch.length) {
        const tail = await this.tailHandle();
        const room = this.options.segmentBytes - (this.segments.get(this.tailSeq) ?? HEADER);
        const chunk: Buffer[] = [];
        let size = 0;
        while (index + chunk.length < batch.length) {
          const next = batch[index + chunk.length]?.bytes ?? Buffer.alloc(0);
          if (chunk.length > 0 && size + next.length > room) break;
          chunk.push(next);
          size += next.length;
        }
        await tail.writev(chunk);
        await tail.sync();
        this.segments.set(this.tailSeq, (this.segments.get(this.tailSeq) ?? HEADER) + size);
        this.writingBytes -= size;
        for (let i = 0; i < chunk.length; i += 1) batch[index + i]?.done?.();
        index += chunk.length;
        if ((this.segments.get(this.tailSeq) ?? 0) >= this.options.segmentBytes)
          await this.rotate();
      }
      this.writeFailed = false;
    } catch (err) {
      // ENOSPC, EIO: keep the records in memory, count the spool as full, try again later.
      const rest = batch.slice(index);
      this.writingBytes = 0;
      this.pending = [...rest, ...this.pending];
      this.pendingBytes = this.pending.reduce((n, r) => n + r.bytes.length, 0);
      this.writeFailed = true;
      this.timer ??= setTimeout(
        () => {
          this.timer = undefined;
          this.flush().catch(() => undefined);
        },
        Math.max(this.options.fsyncMs, 500),
      );
      throw err;
    }
  }

  private async tailHandle(): Promise<FileHandle> {
    if (this.tail !== undefined) return this.tail;
    if (!this.segments.has(this.tailSeq)) {
      mkdirSync(this.options.dir, { recursive: true });
      this.tail = await open(this.path(this.tailSeq), 'w');
      await this.tail.write(SPOOL_HEADER);
      this.segments.set(this.tailSeq, HEADER);
    } else {
      this.tail = await open(this.path(this.tailSeq), 'a');
    }
    return this.tail;
  }

  private async rotate(): Promise<void> {
    await this.tail?.close();
    this.tail = undefined;
    this.tailSeq += 1;
  }

  /**
   * Reads up to `maxRecords` / about `maxBytes` from the head, without consuming them; pending
   * records are committed first when the head has reached them.
   */
  async read(maxRecords: number, maxBytes: number): Promise<SpoolBatch | undefined> {
    if (this.unread === 0) return undefined;
    for (;;) {
      const size = this.segments.get(this.cursor.segment);
      if (size === undefined) {
        const next = [...this.segments.keys()].find((s) => s > this.cursor.segment);
        if (next === undefined) {
          if (this.pending.length === 0) return undefined;
          await this.flush();
          continue;
        }
        this.cursor = { segment: next, offset: HEADER };
        continue;
      }
      if (this.cursor.offset >= size) {
        if (this.cursor.segment === this.tailSeq) {
          if (this.pending.length === 0) return undefined;
          await this.flush();
          continue;
        }
        const next = [...this.segments.keys()].find((s) => s > this.cursor.segment);
        this.cursor = { segment: next ?? this.tailSeq, offset: HEADER };
        continue;
      }
      const batch = await this.readAt(this.cursor, size, maxRecords, maxBytes);
      if (batch !== undefined) return batch;
    }
  }

  private async readAt(
    at: Position,
    size: number,
    maxRecords: number,
    maxBytes: number,
  ): Promise<SpoolBatch | undefined> {
    const handle = await open(this.path(at.segment), 'r');
    try {
      let length = Math.min(size - at.offset, maxBytes + RECORD_OVERHEAD * maxRecords);
      let buf = Buffer.allocUnsafe(length);
      await handle.read(buf, 0, length, at.offset);
      let scan = scanRecords(buf, at.offset, maxRecords);
      if (scan.records.length === 0 && scan.stop === 'torn' && length >= RECORD_OVERHEAD) {
        // One record larger than maxBytes: read exactly it.
        length = RECORD_OVERHEAD + buf.readUInt32BE(0);
        buf = Buffer.allocUnsafe(length);
        await handle.read(buf, 0, length, at.offset);
        scan = scanRecords(buf, at.offset, 1);
      }
      if (scan.records.length === 0) {
        // A bad record in a segment that was fine at start-up: skip the rest of that segment.
        this.corruptRecords += 1;
        this.segments.set(at.segment, at.offset);
        return undefined;
      }
      return {
        records: scan.records.map((r) => Buffer.from(r)),
        end: { segment: at.segment, offset: scan.end },
      };
    } finally {
      await handle.close();
    }
  }

  /** Marks a read batch as delivered: moves and persists the cursor, deletes finished segments. */
  async commit(batch: SpoolBatch): Promise<void> {
    this.cursor = batch.end;
    this.unread = Math.max(0, this.unread - batch.records.length);
    for (const seq of [...this.segments.keys()]) {
      if (seq < this.cursor.segment && seq !== this.tailSeq) {
        this.segments.delete(seq);
        await rm(this.path(seq), { force: true });
      }
    }
    if (this.unread === 0 && this.pending.length === 0) await this.reset();
    else await this.writeCursor();
  }

  /** Everything was delivered: the segments go and the next record starts a new one. */
  private async reset(): Promise<void> {
    await this.flushing.catch(() => undefined);
    if (this.unread !== 0 || this.pending.length !== 0) return this.writeCursor();
    await this.tail?.close();
    this.tail = undefined;
    for (const seq of this.segments.keys()) await rm(this.path(seq), { force: true });
    this.segments.clear();
    this.tailSeq += 1;
    this.cursor = { segment: this.tailSeq, offset: HEADER };
    await rm(join(this.options.dir, 'cursor.json'), { force: true });
  }

  private async writeCursor(): Promise<void> {
    const path = join(this.options.dir, 'cursor.json');
    const tmp = `${path}.tmp`;
    await writeFile(tmp, JSON.stringify(this.cursor));
    const handle = await open(tmp, 'r+');
    await handle.sync();
    await handle.close();
    await rename(tmp, path);
  }

  /** See writeSpoolSync. Ignores the segment size; recovery reads the longer segment fine. */
  writeSync(extra: readonly Buffer[]): number {
    const records = [
      ...this.pending.map((r) => r.bytes),
      ...extra.map((payload) => encodeRecord(payload)),
    ];
    this.pending = [];
    this.pendingBytes = 0;
    if (records.length === 0) return 0;
    mkdirSync(this.options.dir, { recursive: true });
    const path = this.path(this.tailSeq);
    const fd = openSync(path, 'a');
    try {
      if (fstatSync(fd).size === 0) writeSync(fd, SPOOL_HEADER);
      for (const record of records) writeSync(fd, record);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.unread += extra.length;
    return records.length;
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    await this.tail?.close();
    this.tail = undefined;
  }

  /** For `replay`: every record of every segment in `dir`, in order, cursor ignored. */
  static readAll(dir: string): Buffer[] {
    const out: Buffer[] = [];
    const seqs = readdirSync(dir)
      .map(parseSegmentName)
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
    for (const seq of seqs) {
      const buf = readFileSync(join(dir, segmentName(seq)));
      if (buf.length >= HEADER) out.push(...scanRecords(buf.subarray(HEADER), HEADER).records);
    }
    return out;
  }
}

function countFrom(buf: Buffer, offset: number): number {
  if (offset >= buf.length) return 0;
  return scanRecords(buf.subarray(offset), offset).records.length;
}

export function dirSize(dir: string): number {
  try {
    return readdirSync(dir).reduce((n, name) => n + statSync(join(dir, name)).size, 0);
  } catch {
    return 0;
  }
}

/**
 * Last-resort synchronous write for a forced stop: everything pending plus `extra` is appended to
 * the tail segment and fsync'd before the process exits.
 */
export function writeSpoolSync(spool: Spool, extra: readonly Buffer[]): number {
  return spool.writeSync(extra);
}
