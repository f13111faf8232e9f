/**
 * `skroutz-infra rafka`: parses flags, loads and validates the librdkafka-style config before any
 * side effect, creates the shared producer (connecting in the background), opens the metrics and
 * RESP listeners, and hands main.ts a Service whose close() runs the shutdown order of §3.10.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { startAdminServer, type AdminServer } from '../common/admin-server.js';
import { ExitCode, once, type CliIo, type Service } from '../common/component.js';
import { createLogger } from '../common/logger.js';
import { createRegistry } from '../common/metrics.js';
import { formatAddress } from '../common/net.js';
import { VERSION } from '../common/version.js';
import { formatProblem, loadKafkaConfig, type LoadedConfig } from './kafka-config.js';
import { KafkajsPort } from './kafkajs-adapter.js';
import { createRafkaMetrics, ProducerStats } from './metrics.js';
import { parseCommandLine, type RafkaOptions } from './options.js';
import { SharedProducer } from './producer.js';
import { RafkaServer } from './server.js';

/** Reads and validates the config file; returns it or the lines to print. */
async function readConfig(
  options: RafkaOptions,
  cwd: string,
): Promise<{ config?: LoadedConfig; errors: string[] }> {
  const path = isAbsolute(options.config) ? options.config : resolve(cwd, options.config);
  let input: unknown;
  try {
    input = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    return { errors: [`config ${options.config}: ${(err as Error).message}`] };
  }
  const { config, problems } = loadKafkaConfig(input, options.bootstrapServers);
  return { config, errors: problems.map((p) => formatProblem(options.config, p)) };
}

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  const parsed = parseCommandLine(argv, VERSION);
  if (parsed.kind === 'exit') {
    (parsed.toStderr ? io.stderr : io.stdout).write(parsed.output);
    return parsed.code;
  }
  const options = parsed.options;
  const { config, errors } = await readConfig(options, io.cwd);
  if (!config) {
    io.stderr.write(`${errors.join('\n')}\n`);
    return ExitCode.failure;
  }

  const log = createLogger({ stream: io.stderr, fields: { component: 'server' } });
  const registry = createRegistry({ component: 'rafka' });
  const metrics = createRafkaMetrics(registry);
  const stats = new ProducerStats();
  const kafka = new KafkajsPort(config.producer, log, metrics);
  const producer = new SharedProducer(
    kafka,
    config.producer,
    stats,
    metrics,
    log.child({ component: 'producer' }),
  );
  const server = new RafkaServer(
    {
      host: options.host,
      port: options.port,
      shutdownTimeoutMs: options.shutdownTimeoutMs,
      flushTimeoutMs: options.flushTimeoutMs,
      blpopTimeoutSeconds: options.blpopTimeoutSeconds,
    },
    { config, kafka, producer, stats, metrics, log },
  );

  let admin: AdminServer | undefined;
  const abandon = async (message: string, err: unknown): Promise<number> => {
    io.stderr.write(`rafka: ${message}: ${(err as Error).message}\n`);
    await admin?.close();
    producer.stop();
    await kafka.disconnect();
    return ExitCode.failure;
  };
  try {
    if (options.metrics) {
      admin = await startAdminServer({
        host: options.metricsHost,
        port: options.metricsPort,
        registry,
        logger: log,
        health: () => ({ healthy: !server.shuttingDown }),
      });
    }
  } catch (err) {
    return abandon(
      `cannot open the metrics listener on ${options.metricsHost}:${options.metricsPort}`,
      err,
    );
  }
  let address;
  try {
    address = await server.listen();
  } catch (err) {
    return abandon(`cannot listen on ${options.host}:${options.port}`, err);
  }

  const listening = address;
  const announce = (): void =>
    log.info(`Listening on ${formatAddress(listening)}`, {
      version: VERSION,
      listen: formatAddress(listening),
      metrics: admin ? formatAddress(admin.address) : 'off',
      config: options.config,
      effectiveConfig: { consumer: config.consumerSection, producer: config.producerSection },
    });

  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => (finish = r));
  const close = once(async () => {
    const code = await server.close();
    await admin?.close();
    finish(code);
    return code;
  });
  return {
    done,
    shutdownTimeoutMs: options.shutdownTimeoutMs,
    announce,
    close: () => close(),
    destroy: () => server.destroy(),
  };
}
