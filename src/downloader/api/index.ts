/**
 * `skroutz-infra downloader-api`: the HTTP API clients post jobs to, the dashboard and
 * `/metrics`. It writes jobs to the bus and answers from it; it never downloads anything.
 */
import type { CliIo, Service } from '../../common/component.js';
import { once } from '../../common/component.js';
import { createRegistry } from '../../common/metrics.js';
import { closeServer, formatAddress, listen } from '../../common/net.js';
import { runShutdownSteps } from '../../common/shutdown.js';
import { VERSION } from '../../common/version.js';
import { bootConfig, componentLogger, connectRedis, parseFlags } from '../boot.js';
import { JobBus } from '../bus.js';
import { ApiMetrics } from './metrics.js';
import { createApiServer } from './server.js';

const DRAIN_MS = 10_000;

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  const flags = parseFlags(
    argv,
    {
      name: 'downloader-api',
      description: 'Downloader HTTP API, dashboard and /metrics.',
      listener: true,
    },
    io,
  );
  if (typeof flags === 'number') return flags;
  const config = await bootConfig(flags, io);
  const logger = componentLogger(config, io, 'downloader-api');
  const redis = await connectRedis(config, 'api', logger);
  const bus = new JobBus(redis, config.redis.keyPrefix);
  const registry = createRegistry({ component: 'downloader-api' });
  const metrics = new ApiMetrics(registry, () => bus.queueDepths());
  const server = createApiServer({
    bus,
    logger,
    metrics,
    registry,
    downloadUrl: config.processor.downloadUrl,
    maxBodyBytes: config.api.maxBodyBytes,
    heartbeatPath: config.api.heartbeatPath,
    dashboardHosts: config.api.dashboardHosts,
  });
  let address;
  try {
    address = await listen(server, flags.port, flags.host ?? '::');
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const announce = (): void =>
    logger.info('api_listening', {
      version: VERSION,
      listen: formatAddress(address),
      port: address.port,
      config: config.source,
    });

  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  const close = once(async () => {
    const failed = await runShutdownSteps(
      [
        { name: 'http', run: () => closeServer(server, DRAIN_MS), timeoutMs: DRAIN_MS + 1000 },
        { name: 'redis', run: async () => void (await redis.quit()), timeoutMs: 2000 },
      ],
      logger,
    );
    logger.info('api_stopped', { failed_steps: failed });
    const code = failed.length === 0 ? 0 : 1;
    resolveDone(code);
    return code;
  });
  return {
    close: () => close(),
    destroy: () => {
      server.closeAllConnections();
      redis.disconnect();
    },
    done,
    shutdownTimeoutMs: DRAIN_MS + 4000,
    announce,
  };
}
