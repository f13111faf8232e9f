/** The `stdout` sink: NDJSON on fd 1, acked by the write callback (back-pressure honoured). */
import type { Writable } from 'node:stream';
import { NO_FATAL, SinkWriteError, type Sink, type SinkEvent, type WriteResult } from './types.js';

export class StdoutSink implements Sink {
  readonly type = 'stdout';

  constructor(
    readonly name: string,
    private readonly stream: Pick<Writable, 'write'>,
  ) {}

  write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    const parts: Buffer[] = [];
    for (const event of batch) parts.push(event.data, Buffer.from('\n'));
    return new Promise((resolve, reject) => {
      this.stream.write(Buffer.concat(parts), (err) => {
        if (err) reject(new SinkWriteError(`stdout sink: ${err.message}`, { cause: err }));
        else resolve(NO_FATAL);
      });
    });
  }

  probe(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
