/** rafka's command line (§3.1): flags, their defaults and their checks. */
import { Command, InvalidArgumentError } from 'commander';

export interface RafkaOptions {
  /** RESP listen address. Default `0.0.0.0`. */
  host: string;
  /** RESP port; 0 is ephemeral. Default 6380. */
  port: number;
  /** librdkafka-style JSON config, relative to the working directory. Default `librdkafka.json`. */
  config: string;
  /** Replaces `bootstrap.servers` in every section. */
  bootstrapServers: string | undefined;
  /** Prometheus listener address and port (0 is ephemeral). Default `0.0.0.0:9380`. */
  metricsHost: string;
  metricsPort: number;
  /** False with `--no-metrics`. */
  metrics: boolean;
  /**
   * How long a closing connection's messages may take before they count as unflushed. Default 5000.
   */
  flushTimeoutMs: number;
  /** Hard bound from stop signal to exit. Default 8000. */
  shutdownTimeoutMs: number;
  /** Default BLPOP timeout, float seconds > 0. Default 5. */
  blpopTimeoutSeconds: number;
}

export const DEFAULT_OPTIONS: RafkaOptions = {
  host: '0.0.0.0',
  port: 6380,
  config: 'librdkafka.json',
  bootstrapServers: undefined,
  metricsHost: '0.0.0.0',
  metricsPort: 9380,
  metrics: true,
  flushTimeoutMs: 5000,
  shutdownTimeoutMs: 8000,
  blpopTimeoutSeconds: 5,
};

function port(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError(`expected a port from 0 to 65535, got "${value}"`);
  }
  return Number(value);
}

function milliseconds(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`expected a whole number of milliseconds >= 1, got "${value}"`);
  }
  return Number(value);
}

function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError(`expected seconds > 0, got "${value}"`);
  }
  return n;
}

export type ParsedCommandLine =
  | { kind: 'run'; options: RafkaOptions }
  | { kind: 'exit'; code: number; output: string; toStderr: boolean };

/** Parses argv; `--help`, `--version` and mistakes come back as text to print and an exit code. */
export function parseCommandLine(argv: string[], version: string): ParsedCommandLine {
  let output = '';
  let errorOutput = '';
  const d = DEFAULT_OPTIONS;
  const program = new Command('skroutz-infra rafka')
    .description(
      'Kafka proxy speaking a subset of the Redis protocol, wire-compatible with rafka 0.6.2 and\n' +
        'its Ruby client rafka-rb. Produce with RPUSHX, consume with BLPOP, ack with RPUSH acks.\n' +
        'Operator guide: /usr/share/doc/skroutz-infra/rafka.md',
    )
    .option('--host <addr>', 'RESP listen address', d.host)
    .option('-p, --port <n>', 'RESP port (0 picks a free one)', port, d.port)
    .option('-c, --config <path>', 'librdkafka-style JSON config', d.config)
    .option('-b, --bootstrap-servers <list>', 'replaces bootstrap.servers in every section')
    .option('--metrics-host <addr>', 'Prometheus listener address', d.metricsHost)
    .option(
      '--metrics-port <n>',
      'Prometheus listener port (0 picks a free one)',
      port,
      d.metricsPort,
    )
    .option('--no-metrics', 'do not open the Prometheus listener')
    .option(
      '--flush-timeout <ms>',
      "wait for a closing connection's messages",
      milliseconds,
      d.flushTimeoutMs,
    )
    .option(
      '--shutdown-timeout <ms>',
      'hard bound from stop signal to exit',
      milliseconds,
      d.shutdownTimeoutMs,
    )
    .option(
      '--blpop-timeout <s>',
      'default BLPOP timeout, float seconds',
      seconds,
      d.blpopTimeoutSeconds,
    )
    .version(version, '-v, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => (output += text),
      writeErr: (text) => (errorOutput += text),
    });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode ?? 1;
    if (code === 0) return { kind: 'exit', code: 0, output, toStderr: false };
    return { kind: 'exit', code: 1, output: errorOutput || String(err), toStderr: true };
  }
  const o = program.opts<{
    host: string;
    port: number;
    config: string;
    bootstrapServers?: string;
    metricsHost: string;
    metricsPort: number;
    metrics: boolean;
    flushTimeout: number;
    shutdownTimeout: number;
    blpopTimeout: number;
  }>();
  if (o.config === '') {
    return {
      kind: 'exit',
      code: 1,
      output: 'No librdkafka configuration provided\n',
      toStderr: true,
    };
  }
  return {
    kind: 'run',
    options: {
      host: o.host,
      port: o.port,
      config: o.config,
      bootstrapServers: o.bootstrapServers,
      metricsHost: o.metricsHost,
      metricsPort: o.metricsPort,
      metrics: o.metrics,
      flushTimeoutMs: o.flushTimeout,
      shutdownTimeoutMs: o.shutdownTimeout,
      blpopTimeoutSeconds: o.blpopTimeout,
    },
  };
}
