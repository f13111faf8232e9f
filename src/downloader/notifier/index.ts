/**
 * `skroutz-infra downloader-notifier`: delivers the result of each finished download to its
 * callback (HTTP POST or Kafka message) and schedules the stored file's deletion.
 */
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
import { HttpBackend, KafkaBackend } from './backends.js';
import { NotifierMetrics } from './metrics.js';
import { Notifier } from './notifier.js';

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  const flags = parseFlags(
    argv,
    {
      name: 'downloader-notifier',
      description: 'Downloader callbacks: delivers job results over HTTP or Kafka.',
      listener: false,
    },
    io,
  );
  if (typeof flags === 'number') return flags;
  const config = await bootConfig(flags, io);
  const n = config.notifier;
  const metricsAddr = n.metricsAddr === '' ? undefined : parseHostPort(n.metricsAddr);
  if (n.metricsAddr !== '' && !metricsAddr) {
    throw new DownloaderConfigError(
      `notifier.metrics_addr must be "host:port" or "" (got ${JSON.stringify(n.metricsAddr)})`,
    );
  }
  const logger = componentLogger(config, io, 'downloader-notifier');
  const redis = await connectRedis(config, 'notifier', logger);
  const subscriber = await connectRedis(config, 'notifier', logger, 'doorbell');
  const bus = new JobBus(redis, config.redis.keyPrefix);
  const registry = createRegistry({ component: 'downloader-notifier' });
  const metrics = new NotifierMetrics(registry);
  const stats = new StatsRecorder(
    (snapshot, ttlMs) => bus.writeStats('notifier', bus.instanceId, snapshot, ttlMs),
    n.statsIntervalMs,
    logger,
  );
  const backends = {
    http: config.backends.http ? new HttpBackend(config.backends.http.timeoutMs) : undefined,
    kafka: config.backends.kafka ? new KafkaBackend(config.backends.kafka, logger) : undefined,
  };
  const notifier = new Notifier({ config, bus, logger, metrics, stats, backends, subscriber });
  let admin: AdminServer | undefined;
  if (metricsAddr) {
    admin = await startAdminServer({
      host: metricsAddr.host,
      port: metricsAddr.port,
      registry,
      logger,
      health: () => ({ healthy: true, details: { in_flight: notifier.inFlight } }),
    });
  }
  stats.start();
  await notifier.start();
  const announce = (): void =>
    logger.info('notifier_started', {
      version: VERSION,
      metrics: admin ? formatAddress(admin.address) : '',
      config: config.source,
      backends: Object.entries(backends)
        .filter(([, b]) => b)
        .map(([id]) => id),
      instance: bus.instanceId,
    });

  const { close, done } = workerShutdown({
    component: 'notifier',
    drain: () => notifier.drain(n.shutdownGraceMs),
    drainTimeoutMs: n.shutdownGraceMs + 2000,
    stats,
    release: [
      {
        name: 'backends',
        run: async () => {
          await backends.kafka?.close();
          await backends.http?.close();
        },
        timeoutMs: 3000,
      },
    ],
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
    },
    done,
    // The packaging test expects the notifier to stop within its grace period.
    shutdownTimeoutMs: n.shutdownGraceMs + 4000,
    announce,
  };
}
