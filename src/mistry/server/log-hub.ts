/**
 * One hub per running job: it appends to `out.log` and feeds every live reader (SSE, NDJSON
 * streams). Writes are synchronous appends on one descriptor, so the byte offset a reader is given
 * is always on disk; a late subscriber reads the file up to that offset and then follows live.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';

export interface LogSubscriber {
  /** `offset` is the byte offset after `chunk`. */
  chunk(chunk: Buffer, offset: number): void;
  end(): void;
}

/** A subscriber this far behind (bytes queued, not yet flushed) is dropped. */
export const MAX_SUBSCRIBER_LAG_BYTES = 1024 * 1024;

export class LogHub {
  private fd: number | undefined;
  private size = 0;
  private readonly subscribers = new Set<LogSubscriber>();
  private ended = false;

  constructor(readonly path: string) {}

  /** Opens (truncating) the log. */
  start(): void {
    this.fd = openSync(this.path, 'w', 0o644);
    this.size = 0;
  }

  get offset(): number {
    return this.size;
  }

  get finished(): boolean {
    return this.ended;
  }

  write(text: string | Buffer): void {
    const chunk = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    if (chunk.length === 0 || this.fd === undefined) return;
    writeSync(this.fd, chunk);
    this.size += chunk.length;
    for (const subscriber of this.subscribers) subscriber.chunk(chunk, this.size);
  }

  /**
   * Replays `out.log` from `from` to the current offset, then delivers live chunks. Returns the
   * unsubscribe function. Nothing is missed or repeated: the replay reads exactly up to the offset
   * at subscription time and live chunks start after it.
   */
  async subscribe(subscriber: LogSubscriber, from = 0): Promise<() => void> {
    const upTo = this.size;
    const buffered: [Buffer, number][] = [];
    let replaying = true;
    const proxy: LogSubscriber = {
      chunk: (chunk, offset) => {
        if (replaying) buffered.push([chunk, offset]);
        else subscriber.chunk(chunk, offset);
      },
      end: () => {
        if (replaying) buffered.push([Buffer.alloc(0), -1]);
        else subscriber.end();
      },
    };
    if (!this.ended) this.subscribers.add(proxy);
    if (from < upTo) {
      const handle = await open(this.path, 'r');
      try {
        let position = from;
        const block = Buffer.alloc(64 * 1024);
        while (position < upTo) {
          const { bytesRead } = await handle.read(
            block,
            0,
            Math.min(block.length, upTo - position),
            position,
          );
          if (bytesRead === 0) break;
          position += bytesRead;
          subscriber.chunk(Buffer.from(block.subarray(0, bytesRead)), position);
        }
      } finally {
        await handle.close();
      }
    }
    replaying = false;
    for (const [chunk, offset] of buffered) {
      if (offset === -1) subscriber.end();
      else subscriber.chunk(chunk, offset);
    }
    if (this.ended && !buffered.some(([, offset]) => offset === -1)) subscriber.end();
    return () => this.subscribers.delete(proxy);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Closes the file and ends every stream. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    for (const subscriber of this.subscribers) subscriber.end();
    this.subscribers.clear();
  }
}
