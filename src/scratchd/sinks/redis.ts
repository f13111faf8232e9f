/** The `redis` sink (§3.8): one pipeline of XADD per event (stream) or RPUSH per key (list). */
import type { Redis } from 'ioredis';
import { createRedis } from '../../common/redis.js';
import type { Logger } from '../../common/logger.js';
import { renderTemplate, type SinkConfigOf } from '../config.js';
import { NO_FATAL, SinkWriteError, type Sink, type SinkEvent, type WriteResult } from './types.js';

type RedisConfig = SinkConfigOf<'redis'>;

export class RedisSink implements Sink {
  readonly type = 'redis';
  private readonly client: Redis;

  constructor(
    readonly name: string,
    private readonly config: RedisConfig,
    logger: Logger,
  ) {
    this.client = createRedis({
      url: config.url,
      name: `skroutz-infra:scratchd:${name}`,
      logger,
      commandTimeoutMs: config.command_timeout_ms,
      connectTimeoutMs: Math.min(5000, config.command_timeout_ms),
      maxRetriesPerRequest: 0,
      extra: { enableOfflineQueue: false, autoResendUnfulfilledCommands: false },
    });
    // Connection errors are expected while Redis is down; the dispatcher reports them.
    this.client.removeAllListeners('error');
    this.client.on('error', () => undefined);
  }

  async write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    const pipeline = this.client.pipeline();
    if (this.config.mode === 'stream') {
      for (const event of batch) {
        const key = renderTemplate(this.config.key, event.meta.tenant);
        if (this.config.maxlen > 0)
          pipeline.xadd(key, 'MAXLEN', '~', this.config.maxlen, '*', 'e', event.data);
        else pipeline.xadd(key, '*', 'e', event.data);
      }
    } else {
      const byKey = new Map<string, Buffer[]>();
      for (const event of batch) {
        const key = renderTemplate(this.config.key, event.meta.tenant);
        let list = byKey.get(key);
        if (list === undefined) byKey.set(key, (list = []));
        list.push(event.data);
      }
      for (const [key, values] of byKey) pipeline.rpush(key, ...values);
    }
    let replies: [Error | null, unknown][] | null;
    try {
      replies = await pipeline.exec();
    } catch (err) {
      throw new SinkWriteError(`redis sink ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const failed = (replies ?? []).find(([err]) => err !== null);
    if (replies === null || failed !== undefined) {
      const reason = failed?.[0]?.message ?? 'no replies';
      throw new SinkWriteError(`redis sink ${this.name}: ${reason}`, { cause: failed?.[0] });
    }
    return NO_FATAL;
  }

  async probe(): Promise<void> {
    await this.client.ping();
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
