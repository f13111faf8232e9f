/**
 * The `file` sink (§3.8): per-tenant JSONL segments under `<dir>/<tenant>/<day>/`, written as
 * `.jsonl.open` and renamed to `.jsonl` at `segment_mb`, `segment_s` or close.
 */
import { existsSync, readdirSync, readFileSync, renameSync, statSync, truncateSync } from 'node:fs';
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SinkConfigOf } from '../config.js';
import { NO_FATAL, SinkWriteError, type Sink, type SinkEvent, type WriteResult } from './types.js';

type FileConfig = SinkConfigOf<'file'>;

interface Segment {
  handle: FileHandle;
  path: string;
  bytes: number;
  openedAt: number;
  day: string;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

/** Frees a `.jsonl` name for `openPath`: `x.jsonl`, else `x-1.jsonl`, `x-2.jsonl`... */
function finalName(openPath: string): string {
  const base = openPath.replace(/\.jsonl\.open$/, '');
  let candidate = `${base}.jsonl`;
  for (let n = 1; existsSync(candidate); n += 1) candidate = `${base}-${n}.jsonl`;
  return candidate;
}

/** Start-up recovery: every `.open` file is cut after its last newline and closed. */
export function recoverOpenFiles(root: string): number {
  let count = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.jsonl.open')) {
        const buf = readFileSync(path);
        const end = buf.lastIndexOf(0x0a) + 1;
        if (end < buf.length) truncateSync(path, end);
        renameSync(path, finalName(path));
        count += 1;
      }
    }
  };
  walk(root);
  return count;
}

export class FileSink implements Sink {
  readonly type = 'file';
  private readonly open = new Map<string, Segment>();
  private readonly timer: NodeJS.Timeout;
  private dirtySince: number | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly config: FileConfig,
    private readonly root: string,
    private readonly instance: string,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(
      () => {
        this.chain = this.chain.then(() => this.housekeep()).catch(() => undefined);
      },
      Math.min(1000, config.fsync_ms),
    );
    this.timer.unref();
  }

  private async housekeep(): Promise<void> {
    const now = this.now();
    for (const [tenant, segment] of this.open) {
      if (
        now - segment.openedAt >= this.config.segment_s * 1000 ||
        segment.day !== stamp(now).slice(0, 8)
      ) {
        await this.closeSegment(tenant, segment);
      }
    }
    if (
      this.config.fsync === 'interval' &&
      this.dirtySince !== undefined &&
      now - this.dirtySince >= this.config.fsync_ms
    ) {
      this.dirtySince = undefined;
      for (const segment of this.open.values()) await segment.handle.sync();
    }
  }

  private async segmentFor(tenant: string): Promise<Segment> {
    const now = this.now();
    const existing = this.open.get(tenant);
    if (existing !== undefined) {
      const old = now - existing.openedAt >= this.config.segment_s * 1000;
      const full = existing.bytes >= this.config.segment_mb * 1024 * 1024;
      if (!old && !full && existing.day === stamp(now).slice(0, 8)) return existing;
      await this.closeSegment(tenant, existing);
    }
    const day = new Date(now).toISOString().slice(0, 10);
    const dir = join(this.root, tenant, day);
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${this.instance}-${stamp(now)}.jsonl.open`);
    const handle = await open(path, 'a');
    const segment = { handle, path, bytes: 0, openedAt: now, day: stamp(now).slice(0, 8) };
    this.open.set(tenant, segment);
    return segment;
  }

  private async closeSegment(tenant: string, segment: Segment): Promise<void> {
    this.open.delete(tenant);
    await segment.handle.sync();
    await segment.handle.close();
    await rename(segment.path, finalName(segment.path));
  }

  write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    const run = this.chain.then(() => this.writeNow(batch));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async writeNow(batch: readonly SinkEvent[]): Promise<WriteResult> {
    const byTenant = new Map<string, Buffer[]>();
    const newline = Buffer.from('\n');
    for (const event of batch) {
      let list = byTenant.get(event.meta.tenant);
      if (list === undefined) byTenant.set(event.meta.tenant, (list = []));
      list.push(event.data, newline);
    }
    try {
      for (const [tenant, buffers] of byTenant) {
        const segment = await this.segmentFor(tenant);
        const { bytesWritten } = await segment.handle.writev(buffers);
        segment.bytes += bytesWritten;
        if (this.config.fsync === 'batch') await segment.handle.sync();
      }
    } catch (err) {
      throw new SinkWriteError(`file sink ${this.name}: ${(err as Error).message}`, { cause: err });
    }
    if (this.config.fsync === 'interval') this.dirtySince ??= this.now();
    return NO_FATAL;
  }

  async probe(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.chain;
    for (const [tenant, segment] of [...this.open]) await this.closeSegment(tenant, segment);
  }
}
