/**
 * What the three downloader commands share: their flags, the config, the logger, the Redis
 * connection (PING for up to 10 s, CLIENT SETNAME), the metrics every one of them exports, the
 * stats snapshot writer, and the workers' (processor and notifier) shutdown sequence.
 */
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { Redis } from 'ioredis';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AdminServer } from '../common/admin-server.js';
import { once, type CliIo } from '../common/component.js';
import { createLogger, levelFromEnv, type Logger } from '../common/logger.js';
import { createRedis, waitForRedis } from '../common/redis.js';
import { runShutdownSteps, type ShutdownStep } from '../common/shutdown.js';
import { VERSION } from '../common/version.js';
import { loadConfig, DownloaderConfigError, type DownloaderConfig } from './config.js';

export interface DownloaderFlags {
  config: string;
  host: string | undefined;
  port: number;
}

export interface FlagSpec {
  name: string;
  description: string;
  /** The api also takes --host and --port. */
  listener: boolean;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new CommanderError(2, 'downloader.port', `--port must be from 0 to 65535 (got ${value})`);
  }
  return port;
}

/** Parses argv; a number is the exit code of `--help` or of a usage error. */
export function parseFlags(argv: string[], spec: FlagSpec, io: CliIo): DownloaderFlags | number {
  const program = new Command(`skroutz-infra ${spec.name}`)
    .description(spec.description)
    .addOption(
      new Option(
        '-c, --config <path>',
        'JSON config shared by the api, processor and notifier',
      ).default('config.json'),
    )
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .addHelpText(
      'after',
      '\nConfig keys, defaults, metrics and shutdown are described in docs/downloader.md.',
    );
  if (spec.listener) {
    program
      .option('--host <host>', 'interface to listen on (default: all interfaces)')
      .option('-p, --port <port>', 'HTTP port of the API, dashboard and /metrics', parsePort, 8000);
  }
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  const opts = program.opts<{ config: string; host?: string; port?: number }>();
  return { config: resolve(io.cwd, opts.config), host: opts.host, port: opts.port ?? 8000 };
}

export async function bootConfig(flags: DownloaderFlags, io: CliIo): Promise<DownloaderConfig> {
  return loadConfig(flags.config, io.env);
}

/** The component's logger: JSON lines on stdout, at `LOG_LEVEL` if set, else `log.level`. */
export function componentLogger(config: DownloaderConfig, io: CliIo, component: string): Logger {
  const level = levelFromEnv(io.env, config.logLevel);
  return createLogger({ stream: io.stdout, level, fields: { component } });
}

/**
 * Registers the metrics every downloader component exports (spec §6): `downloader_build_info`,
 * set once, and `downloader_redis_errors_total`, which is returned for the component to count.
 */
export function registerCommonMetrics(registry: Registry): Counter {
  new Gauge({
    name: 'downloader_build_info',
    help: 'Build of the running component',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: VERSION }, 1);
  return new Counter({
    name: 'downloader_redis_errors_total',
    help: 'Redis commands that failed',
    registers: [registry],
  });
}

/** Opens the component's Redis connection and waits for PING. */
export async function connectRedis(
  config: DownloaderConfig,
  component: string,
  logger: Logger,
  role = 'main',
  /** Sends commands issued in the same tick as one write (for busy command connections). */
  autoPipelining = false,
): Promise<Redis> {
  const r = config.redis;
  const client = createRedis({
    url: `redis://${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port}`,
    name: role === 'main' ? `downloader-${component}` : `downloader-${component}-${role}`,
    logger,
    maxRetriesPerRequest: 2,
    extra: {
      ...(r.sentinels && r.masterName ? { sentinels: r.sentinels, name: r.masterName } : {}),
      enableAutoPipelining: autoPipelining,
    },
  });
  try {
    await waitForRedis(client, 10_000);
  } catch (err) {
    client.disconnect();
    const reason = err instanceof Error ? err.message : String(err);
    throw new DownloaderConfigError(`Could not ping Redis Server successfully: ${reason}`);
  }
  return client;
}

/**
 * Per-instance counters in the original's key names, written to Redis every interval with a TTL
 * of two intervals, so `/stats/<component>` sums only live instances.
 */
export class StatsRecorder {
  private readonly values = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (snapshot: Record<string, number>, ttlMs: number) => Promise<void>,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  add(key: string, by = 1): void {
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  set(key: string, value: number): void {
    this.values.set(key, value);
  }

  /** Raises the `max*` peak for `key` to `value` if higher. */
  peak(key: string, value: number): void {
    if (value > (this.values.get(key) ?? 0)) this.values.set(key, value);
  }

  get(key: string): number {
    return this.values.get(key) ?? 0;
  }

  snapshot(): Record<string, number> {
    return { alive: 1, ...Object.fromEntries(this.values) };
  }

  start(): void {
    const tick = (): void => {
      this.flush().catch((err: unknown) => this.logger.warn('stats_write_failed', { err }));
    };
    tick();
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
  }

  async flush(): Promise<void> {
    await this.write(this.snapshot(), this.intervalMs * 2);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A sleep that ends early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolveSleep) => {
    if (signal?.aborted) return resolveSleep();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolveSleep();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface PollLoopOptions {
  name: string;
  everyMs: number;
  round: () => Promise<void>;
  /** Checked before each round and after it: true ends the loop. */
  closing: () => boolean;
  /** Aborted on shutdown; cuts the sleep between rounds short. */
  stopping: AbortSignal;
  logger: Logger;
  /** Counted once per failed round. */
  onError: () => void;
  /** Receives, once, the function that ends the current sleep or skips the next one. */
  armWake?: (wake: () => void) => void;
}

/**
 * A sleep of up to `ms` that `wake()` or `stopping` ends early. Every finished job wakes its loop,
 * so a wake-up is one flag and at most one resolve: no AbortController (whose abort builds a
 * DOMException with a stack trace) and no combined signal per round.
 */
class WakeableSleep {
  private woken = false;
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly stopping: AbortSignal) {
    stopping.addEventListener('abort', () => this.wake(), { once: true });
  }

  /** Ends the current sleep, or makes the next one return at once. */
  wake(): void {
    this.woken = true;
    this.end();
  }

  /** Forgets wake-ups from before this point. */
  rearm(): void {
    this.woken = false;
  }

  sleep(ms: number): Promise<void> {
    if (this.woken || this.stopping.aborted) return Promise.resolve();
    return new Promise((resolveSleep) => {
      this.resolve = resolveSleep;
      this.timer = setTimeout(() => this.end(), ms);
    });
  }

  private end(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const resolveSleep = this.resolve;
    this.resolve = undefined;
    resolveSleep?.();
  }
}

/**
 * Runs `round` every `everyMs` until shutdown: sooner when woken, and a failed round is logged and
 * counted, never fatal. The shape of the processor's and notifier's claim and reclaim loops.
 */
export async function pollLoop(options: PollLoopOptions): Promise<void> {
  const pause = new WakeableSleep(options.stopping);
  options.armWake?.(() => pause.wake());
  while (!options.closing()) {
    // Re-armed before the round, so a wake-up that arrives while it runs skips the next sleep.
    pause.rearm();
    try {
      await options.round();
    } catch (err) {
      options.onError();
      options.logger.warn('loop_error', {
        loop: options.name,
        err: err instanceof Error ? err.message : String(err),
      });
    }
    if (options.closing()) break;
    await pause.sleep(options.everyMs);
  }
}

export interface WorkerShutdown {
  component: 'processor' | 'notifier';
  /** Finishes or requeues the jobs in hand within the grace period. */
  drain: () => Promise<{ finished: number; requeued: number }>;
  drainTimeoutMs: number;
  stats: StatsRecorder;
  /** The component's own clients, closed after the stats flush and before the metrics listener. */
  release: ShutdownStep[];
  admin: AdminServer | undefined;
  redis: Redis;
  subscriber: Redis;
  logger: Logger;
}

/**
 * A worker's stop, run once however often it is asked for: drain, flush stats, release the
 * component's clients, close the metrics listener, quit Redis; each step bounded. Resolves (and
 * `done` resolves) with 0, or 1 when a step failed or ran out of time.
 */
export function workerShutdown(w: WorkerShutdown): {
  close: () => Promise<number>;
  done: Promise<number>;
} {
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  const close = once(async () => {
    let drained = { finished: 0, requeued: 0 };
    const failed = await runShutdownSteps(
      [
        {
          name: 'drain',
          run: async () => void (drained = await w.drain()),
          timeoutMs: w.drainTimeoutMs,
        },
        {
          name: 'stats',
          run: async () => {
            w.stats.stop();
            await w.stats.flush();
          },
          timeoutMs: 1000,
        },
        ...w.release,
        { name: 'metrics', run: () => w.admin?.close(), timeoutMs: 1000 },
        {
          name: 'redis',
          run: async () => {
            await w.subscriber.quit();
            await w.redis.quit();
          },
          timeoutMs: 1000,
        },
      ],
      w.logger,
    );
    w.logger.info(`${w.component}_stopped`, { ...drained, failed_steps: failed });
    const code = failed.length === 0 ? 0 : 1;
    resolveDone(code);
    return code;
  });
  return { close, done };
}
