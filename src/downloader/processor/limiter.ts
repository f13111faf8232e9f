/**
 * Per-aggregation concurrency shared by every processor: one bottleneck Group on Redis, one
 * limiter per aggregation. bottleneck 2.19.5 recognises its own Lua errors by exact message, but
 * Redis 7 prefixes them with `ERR `, so its recovery after lost keys never runs; the connection's
 * script callback is wrapped here to strip that prefix, and the recovery is logged.
 */
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import type { Logger } from '../../common/logger.js';

const HEALABLE = /^ERR (SETTINGS_KEY_NOT_FOUND|UNKNOWN_CLIENT)\b/;

type ScriptCallback = (err: Error | null, replies?: unknown) => void;

interface ScriptConnection {
  __scriptArgs__(name: string, id: string, args: unknown[], cb: ScriptCallback): unknown[];
}

/** Makes bottleneck's self-healing work on Redis 7 (see the file comment). */
function patchRedis7Errors(
  connection: Bottleneck.IORedisConnection,
  onHeal: (what: string) => void,
): void {
  const target = connection as unknown as ScriptConnection;
  const original = target.__scriptArgs__.bind(target);
  target.__scriptArgs__ = (name, id, args, cb) =>
    original(name, id, args, (err, replies) => {
      const match = err ? HEALABLE.exec(err.message) : null;
      if (err && match?.[1]) {
        err.message = match[1];
        onHeal(match[1]);
      }
      cb(err, replies);
    });
}

export interface LimiterGroupOptions {
  client: Redis;
  keyPrefix: string;
  logger: Logger;
}

export class LimiterGroup {
  private readonly connection: Bottleneck.IORedisConnection;
  private readonly group: Bottleneck.Group;

  constructor(options: LimiterGroupOptions) {
    this.connection = new Bottleneck.IORedisConnection({ client: options.client, Redis });
    patchRedis7Errors(this.connection, (what) =>
      options.logger.warn('limiter_reinit', { reason: what }),
    );
    this.connection.on('error', (err: Error) =>
      options.logger.warn('limiter_error', { err: err.message }),
    );
    this.group = new Bottleneck.Group({
      datastore: 'ioredis',
      connection: this.connection,
      clearDatastore: false,
      id: `${options.keyPrefix}limits`,
      maxConcurrent: 4,
      // Idle limiters (no job on any processor) are dropped, with their Redis keys, after 5 min.
      timeout: 300_000,
    });
    this.group.on('error', (err: Error) =>
      options.logger.warn('limiter_error', { err: err.message }),
    );
  }

  async ready(): Promise<void> {
    await (this.connection as unknown as { ready: Promise<unknown> }).ready;
  }

  /**
   * The aggregation's limiter. Idle limiters are not deleted here: deleting one removes its Redis
   * keys, which the other processors still use; the Group drops them once idle cluster-wide.
   */
  limiter(aggr: string): Bottleneck {
    return this.group.key(aggr);
  }

  /** Sets the limit; bottleneck writes it to Redis in the background. */
  apply(limiter: Bottleneck, limit: number): void {
    limiter.updateSettings({ maxConcurrent: limit });
  }

  /** Closes the limiter connection (and its subscriber). */
  async disconnect(): Promise<void> {
    await this.connection.disconnect(true);
  }
}
