/**
 * The one way components open Redis connections (the shared job bus, sinks, limiters). Options a
 * production connection needs are set here once: a name visible in CLIENT LIST, a connect
 * timeout, bounded retries per command, and state changes logged.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';
import { redactUrl } from './errors.js';

export interface RedisConnectionOptions {
  /** `redis://[user:pass@]host:port[/db]`. */
  url: string;
  /** CLIENT SETNAME value, e.g. `skroutz-infra:downloader-api`. */
  name: string;
  logger: Logger;
  /** Limit on establishing the TCP connection. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Limit on each command; 0 disables. Default 10000 ms. */
  commandTimeoutMs?: number;
  /** Retries of a command while reconnecting before it fails. Default 3. */
  maxRetriesPerRequest?: number | null;
  /** Longest pause between reconnect attempts. Default 2000 ms. */
  maxReconnectDelayMs?: number;
  /** Extra ioredis options (sentinels, key prefix, lazyConnect). */
  extra?: RedisOptions;
}

export function createRedis(options: RedisConnectionOptions): Redis {
  const log = options.logger.child({ redis: redactUrl(options.url), connection: options.name });
  const maxDelay = options.maxReconnectDelayMs ?? 2000;
  const client = new Redis(options.url, {
    connectionName: options.name,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    commandTimeout:
      options.commandTimeoutMs === 0 ? undefined : (options.commandTimeoutMs ?? 10_000),
    maxRetriesPerRequest:
      options.maxRetriesPerRequest === undefined ? 3 : options.maxRetriesPerRequest,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), maxDelay),
    ...options.extra,
  });
  client.on('ready', () => log.debug('redis ready'));
  client.on('error', (err: Error) => log.warn('redis connection error', { err: err.message }));
  client.on('end', () => log.debug('redis connection ended'));
  return client;
}

/** Waits until PING answers or `timeoutMs` passes; rejects with the last error. */
export async function waitForRedis(client: Redis, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      await client.ping();
      return;
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw lastError instanceof Error ? lastError : new Error(`no PONG within ${timeoutMs} ms`);
}
