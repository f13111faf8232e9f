/**
 * `skroutz-infra downloader-processor`: claims download jobs from the bus, fetches and stores
 * them under per-aggregation limits shared across processors, and reaps delivered files.
 */
import { mkdir } from 'node:fs/promises';
import { startAdminServer, type AdminServer } from '../../common/admin-server.js';
import { parseHostPort } from '../../common/config.js';
import type { CliIo, Service } from '../../common/component.js';
import { createRegistry } from '../../common/metrics.js';
import { formatAddress } from '../../common/net.js';
import { VERSION } from '../../common/version.js';
import {
  bootConfig,
  componentLogger,
  connectRedis,
  parseFlags,
  StatsRecorder,
  workerShutdown,
} from '../boot.js';
import { JobBus } from '../bus.js';
import { DownloaderConfigError } from '../config.js';
import { DiskWatermark, realStatFs } from './disk.js';
import { LimiterGroup } from './limiter.js';
import { ProcessorMetrics } from './metrics.js';
import { Processor } from './processor.js';
import { SsrfGuard } from './ssrf.js';
import { removeOrphans, verifyWritable } from './storage.js';

const ORPHAN_SWEEP_MS = 3_600_000;

/**
 * libuv's thread pool runs every file operation (open, write, fsync, rename) and DNS lookup;
 * its default of 4 threads serialises the fsyncs of many concurrent downloads. libuv reads the
 * variable when the pool starts, on the first such operation (reading the config), so it is set
 * before that; an operator's own value wins.
 */
const THREAD_POOL_SIZE = '16';

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  process.env.UV_THREADPOOL_SIZE ??= THREAD_POOL_SIZE;
  const flags = parseFlags(
    argv,
    {
      name: 'downloader-processor',
      description: 'Downloader worker: claims jobs, downloads, checks and stores files.',
      listener: false,
    },
    io,
  );
  if (typeof flags === 'number') return flags;
  const config = await bootConfig(flags, io);
  const p = config.processor;
  let guard: SsrfGuard | undefined;
  try {
    guard = p.ssrfGuard.enabled ? new SsrfGuard(p.ssrfGuard.allow) : undefined;
  } catch (err) {
    throw new DownloaderConfigError(`processor.ssrf_guard.allow: ${(err as Error).message}`);
  }
  const metricsAddr = p.metricsAddr === '' ? undefined : parseHostPort(p.metricsAddr);
  if (p.metricsAddr !== '' && !metricsAddr) {
    throw new DownloaderConfigError(
      `processor.metrics_addr must be "host:port" or "" (got ${JSON.stringify(p.metricsAddr)})`,
    );
  }
  try {
    await verifyWritable(p.storageDir);
    await mkdir(p.rootDir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new DownloaderConfigError(
      `Error verifying storage directory is writable: ${(err as Error).message}`,
    );
  }
  const logger = componentLogger(config, io, 'downloader-processor');
  if (p.rootDefaulted) logger.warn('filestorage_defaulted', { rootdir: p.rootDir });

  // The bus connection batches the commands of one tick (concurrent claims, lease renewals) into
  // one write. The limiter's is not auto-pipelined: bottleneck sends a lane's submit and register
  // scripts one job after another, each waiting for the last, so there is nothing to batch, and
  // holding every script until the next turn of the event loop made a claimed job wait about
  // twice as long for its slot in the small-file benchmark.
  const redis = await connectRedis(config, 'processor', logger, 'main', true);
  const limiterClient = await connectRedis(config, 'processor', logger, 'limiter', false);
  const subscriber = await connectRedis(config, 'processor', logger, 'doorbell');
  const bus = new JobBus(redis, config.redis.keyPrefix);
  const registry = createRegistry({ component: 'downloader-processor' });
  const metrics = new ProcessorMetrics(registry);
  const stats = new StatsRecorder(
    (snapshot, ttlMs) => bus.writeStats('processor', bus.instanceId, snapshot, ttlMs),
    p.statsIntervalMs,
    logger,
  );
  const limiters = new LimiterGroup({
    client: limiterClient,
    keyPrefix: config.redis.keyPrefix,
    logger,
  });
  await limiters.ready();

  const disk = new DiskWatermark(p.disk.high_pct, p.disk.low_pct);
  const checkDisk = async (): Promise<void> => {
    const change = disk.update(await realStatFs(p.storageDir));
    metrics.diskUsage.set(disk.usage);
    metrics.diskPaused.set(disk.paused ? 1 : 0);
    if (change)
      logger.warn(change === 'paused' ? 'disk_paused' : 'disk_resumed', { usage: disk.usage });
  };
  await checkDisk();
  const diskTimer = setInterval(() => {
    checkDisk().catch((err: unknown) => logger.warn('disk_check_failed', { err }));
  }, p.disk.interval_ms);
  diskTimer.unref();
  const sweep = (): void => {
    removeOrphans(p.storageDir, p.timeouts.attempt_ms + 30_000)
      .then((n) => n > 0 && logger.info('orphans_removed', { count: n }))
      .catch((err: unknown) => logger.warn('orphan_sweep_failed', { err }));
  };
  sweep();
  const sweepTimer = setInterval(sweep, ORPHAN_SWEEP_MS);
  sweepTimer.unref();

  const processor = new Processor({
    config,
    bus,
    logger,
    metrics,
    stats,
    limiters,
    guard,
    subscriber,
    isDiskPaused: () => disk.paused,
  });
  let admin: AdminServer | undefined;
  if (metricsAddr) {
    admin = await startAdminServer({
      host: metricsAddr.host,
      port: metricsAddr.port,
      registry,
      logger,
      health: () => ({ healthy: true, details: { in_flight: processor.inFlight } }),
    });
  }
  stats.start();
  await processor.start();
  const announce = (): void =>
    logger.info('processor_started', {
      version: VERSION,
      metrics: admin ? formatAddress(admin.address) : '',
      config: config.source,
      instance: bus.instanceId,
    });

  const { close, done } = workerShutdown({
    component: 'processor',
    drain: () => {
      clearInterval(diskTimer);
      clearInterval(sweepTimer);
      return processor.drain(p.shutdownGraceMs);
    },
    drainTimeoutMs: p.shutdownGraceMs + 3000,
    stats,
    release: [{ name: 'limiters', run: () => limiters.disconnect(), timeoutMs: 1000 }],
    admin,
    redis,
    subscriber,
    logger,
  });
  return {
    close: () => close(),
    destroy: () => {
      redis.disconnect();
      subscriber.disconnect();
      limiterClient.disconnect();
    },
    done,
    shutdownTimeoutMs: p.shutdownGraceMs + 5000,
    announce,
  };
}
