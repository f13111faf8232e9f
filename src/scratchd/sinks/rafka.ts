/**
 * The `rafka` sink (§2 wire contract, §3.8): on one dedicated connection, `HGETALL stats`,
 * pipelined `RPUSHX topics:<topic>[:<key>]`, `DUMP <timeout>`, `HGETALL stats`. A batch is acked
 * only if every RPUSHX gave 1, DUMP gave 0 and `producer.delivery.errors` did not grow.
 */
import { Redis } from 'ioredis';
import { renderTemplate, type SinkConfigOf } from '../config.js';
import { eventKey, SinkWriteError, type Sink, type SinkEvent, type WriteResult } from './types.js';

type RafkaConfig = SinkConfigOf<'rafka'>;

export class RafkaSink implements Sink {
  readonly type = 'rafka';
  private readonly client: Redis;

  constructor(
    readonly name: string,
    private readonly config: RafkaConfig,
  ) {
    const url = new URL(config.url);
    // rafka answers no AUTH, SELECT, INFO, HELLO or CLIENT: none of them may be sent.
    this.client = new Redis({
      host: url.hostname,
      port: Number(url.port || 6380),
      db: 0,
      // RESP2: ioredis 6 would open with HELLO 3, which rafka does not answer.
      protocol: 2,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      disableClientInfo: true,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 5000,
      commandTimeout: config.dump_timeout_ms + 2000,
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), 2000),
    });
    this.client.on('error', () => undefined);
  }

  private async deliveryErrors(): Promise<number> {
    const raw = await this.client.call('HGETALL', 'stats');
    if (!Array.isArray(raw))
      throw new SinkWriteError(`rafka sink ${this.name}: HGETALL stats gave no array`);
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (String(raw[i]) === 'producer.delivery.errors') return Number(raw[i + 1]);
    }
    throw new SinkWriteError(`rafka sink ${this.name}: stats lack producer.delivery.errors`);
  }

  async write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    try {
      return await this.writeOnce(batch);
    } catch (err) {
      if (err instanceof SinkWriteError) throw err;
      throw new SinkWriteError(`rafka sink ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private async writeOnce(batch: readonly SinkEvent[]): Promise<WriteResult> {
    const before = await this.deliveryErrors();
    const pipeline = this.client.pipeline();
    for (const event of batch) {
      const topic = renderTemplate(this.config.topic, event.meta.tenant);
      const key = eventKey(event.meta, this.config.key);
      pipeline.call(
        'RPUSHX',
        key === null ? `topics:${topic}` : `topics:${topic}:${key}`,
        event.data,
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    const fatal: WriteResult['fatal'] = [];
    for (let index = 0; index < batch.length; index += 1) {
      const [err, reply] = replies[index] ?? [new Error('no reply'), null];
      if (err !== null) {
        if (/too large/i.test(err.message)) fatal.push({ index, reason: err.message });
        else
          throw new SinkWriteError(`rafka sink ${this.name}: RPUSHX failed: ${err.message}`, {
            cause: err,
          });
      } else if (reply !== 1) {
        throw new SinkWriteError(
          `rafka sink ${this.name}: RPUSHX answered ${String(reply)}, not 1`,
        );
      }
    }
    const outstanding = await this.client.call('DUMP', String(this.config.dump_timeout_ms));
    if (outstanding !== 0) {
      throw new SinkWriteError(
        `rafka sink ${this.name}: DUMP left ${String(outstanding)} outstanding`,
      );
    }
    const after = await this.deliveryErrors();
    if (after > before) {
      throw new SinkWriteError(
        `rafka sink ${this.name}: ${after - before} delivery error(s) while writing`,
      );
    }
    return { fatal };
  }

  async probe(): Promise<void> {
    const reply = await this.client.call('PING');
    if (reply !== 'PONG')
      throw new SinkWriteError(`rafka sink ${this.name}: PING gave ${String(reply)}`);
  }

  async close(): Promise<void> {
    try {
      await this.client.call('DUMP', String(this.config.dump_timeout_ms));
      await this.client.call('QUIT');
    } catch {
      // Already gone: nothing is left to flush on this connection.
    }
    this.client.disconnect();
  }
}
