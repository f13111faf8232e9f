/**
 * The configuration file the api, processor and notifier share. Keys of the original keep their
 * names and meaning; the checks whose wording operators know from the original (`Notifier
 * Concurrency must be a positive number`) keep it, everything else uses the project's rules.
 */
import {
  array,
  boolean,
  integer,
  number,
  object,
  oneOf,
  optional,
  parseConfig,
  readJsonFile,
  record,
  required,
  string,
  withDefault,
  type Rule,
} from '../common/config.js';
import { SkroutzError } from '../common/errors.js';
import { requestUriError } from './go-url.js';

const anything: Rule<unknown> = { describe: 'any value', parse: (value) => value };

const timeoutsSchema = object(
  {
    connect_ms: withDefault(integer({ min: 1 }), 5000),
    tls_ms: withDefault(integer({ min: 1 }), 4000),
    response_ms: withDefault(integer({ min: 1 }), 30_000),
    idle_ms: withDefault(integer({ min: 1 }), 30_000),
    attempt_ms: withDefault(integer({ min: 1 }), 600_000),
  },
  'ignore',
);

const diskSchema = object(
  {
    high_pct: withDefault(number({ min: 0, max: 100 }), 95),
    low_pct: withDefault(number({ min: 0, max: 100 }), 90),
    interval_ms: withDefault(integer({ min: 10 }), 60_000),
  },
  'ignore',
);

const schema = object(
  {
    redis: withDefault(
      object(
        {
          addr: withDefault(string({ nonEmpty: true }), '127.0.0.1:6379'),
          sentinel: optional(anything),
          master_name: optional(string()),
          key_prefix: withDefault(string({ nonEmpty: true }), 'downloader:'),
        },
        'ignore',
      ),
      () => ({
        addr: '127.0.0.1:6379',
        key_prefix: 'downloader:',
        sentinel: undefined,
        master_name: undefined,
      }),
    ),
    api: withDefault(
      object(
        {
          heartbeat_path: withDefault(string(), ''),
          dashboard_hosts: withDefault(array(string()), () => []),
          max_body_bytes: withDefault(integer({ min: 1 }), 10_485_760),
        },
        'ignore',
      ),
      () => ({ heartbeat_path: '', dashboard_hosts: [], max_body_bytes: 10_485_760 }),
    ),
    processor: required(
      object(
        {
          storage_dir: required(string({ nonEmpty: true })),
          filestorage: optional(record(anything)),
          download_url: required(string()),
          request_headers: withDefault(record(string()), () => ({})),
          stats_interval: withDefault(number(), 5000),
          metrics_addr: withDefault(string(), '127.0.0.1:8001'),
          max_download_bytes: withDefault(integer({ min: 1 }), 104_857_600),
          timeouts: withDefault(
            timeoutsSchema,
            (): Timeouts => timeoutsSchema.parse({}, '', noCtx()) as Timeouts,
          ),
          visibility_timeout_ms: withDefault(integer({ min: 100 }), 60_000),
          max_in_flight: withDefault(integer({ min: 1 }), 1024),
          retry_after_max_s: withDefault(integer({ min: 0 }), 3600),
          ssrf_guard: withDefault(
            object(
              {
                enabled: withDefault(boolean(), false),
                allow: withDefault(array(string({ nonEmpty: true })), () => []),
              },
              'ignore',
            ),
            () => ({ enabled: false, allow: [] }),
          ),
          disk: withDefault(diskSchema, (): Disk => diskSchema.parse({}, '', noCtx()) as Disk),
          shutdown_grace_ms: withDefault(integer({ min: 0 }), 20_000),
        },
        'ignore',
      ),
    ),
    notifier: required(
      object(
        {
          concurrency: optional(anything),
          deletion_interval: optional(anything),
          stats_interval: withDefault(number(), 5000),
          metrics_addr: withDefault(string(), '127.0.0.1:8002'),
          visibility_timeout_ms: withDefault(integer({ min: 100 }), 60_000),
          shutdown_grace_ms: withDefault(integer({ min: 0 }), 15_000),
        },
        'ignore',
      ),
    ),
    backends: withDefault(record(anything), () => ({})),
    log: withDefault(
      object({ level: withDefault(oneOf(['debug', 'info', 'warn', 'error']), 'info') }, 'ignore'),
      () => ({ level: 'info' as const }),
    ),
  },
  'ignore',
);

function noCtx() {
  return { issues: [], warnings: [] };
}

type RuleValue<R> = R extends Rule<infer T> ? T : never;
type Timeouts = RuleValue<typeof timeoutsSchema>;
type Disk = RuleValue<typeof diskSchema>;
type RawConfig = RuleValue<typeof schema>;

/** The Kafka backend, mapped from librdkafka-style keys. */
export interface KafkaBackendConfig {
  brokers: string[];
  clientId: string;
  acks: number;
  retries: number | undefined;
  ignoredKeys: string[];
}

export interface DownloaderConfig {
  source: string;
  redis: {
    /** Plain `host:port`, or the sentinels' addresses in sentinel mode. */
    host: string;
    port: number;
    sentinels: { host: string; port: number }[] | undefined;
    masterName: string | undefined;
    keyPrefix: string;
  };
  api: { heartbeatPath: string; dashboardHosts: string[]; maxBodyBytes: number };
  processor: {
    storageDir: string;
    rootDir: string;
    /** True when `filestorage` was absent and the root defaulted to `storage_dir`. */
    rootDefaulted: boolean;
    downloadUrl: string;
    requestHeaders: Record<string, string>;
    statsIntervalMs: number;
    metricsAddr: string;
    maxDownloadBytes: number;
    timeouts: Timeouts;
    visibilityTimeoutMs: number;
    maxInFlight: number;
    retryAfterMaxS: number;
    ssrfGuard: { enabled: boolean; allow: string[] };
    disk: Disk;
    shutdownGraceMs: number;
  };
  notifier: {
    concurrency: number;
    deletionIntervalMs: number;
    statsIntervalMs: number;
    metricsAddr: string;
    visibilityTimeoutMs: number;
    shutdownGraceMs: number;
  };
  backends: { http: { timeoutMs: number } | undefined; kafka: KafkaBackendConfig | undefined };
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Backoff units: 120 s per download attempt, 10 min per callback, 10 s for internal errors. */
  units: { downloadRetryMs: number; callbackRetryMs: number; internalRetryMs: number };
}

/** A check of the original's whose message is kept word for word. */
export class DownloaderConfigError extends SkroutzError {
  constructor(message: string) {
    super('ERR_CONFIG', message);
  }
}

function fail(message: string): never {
  throw new DownloaderConfigError(message);
}

function parseAddr(addr: string, key: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  if (!match) fail(`${key}: must be "host:port" (got ${JSON.stringify(addr)})`);
  return { host: match[1] ?? match[2] ?? '127.0.0.1', port: Number(match[3]) };
}

function sentinelsOf(raw: RawConfig['redis']): { host: string; port: number }[] | undefined {
  if (raw.sentinel === undefined || raw.sentinel === false || !raw.master_name) return undefined;
  let list: string[];
  if (typeof raw.sentinel === 'string') list = raw.sentinel.split(',');
  else if (Array.isArray(raw.sentinel)) list = raw.sentinel.map(String);
  else list = raw.addr.split(',');
  return list.filter((a) => a.trim() !== '').map((a) => parseAddr(a, 'redis.sentinel'));
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

function kafkaBackend(raw: Record<string, unknown>): KafkaBackendConfig {
  const servers = raw['bootstrap.servers'];
  if (typeof servers !== 'string' || servers.trim() === '') {
    fail('backends.kafka: "bootstrap.servers" must be a non-empty comma-separated string');
  }
  const known = [
    'bootstrap.servers',
    'client.id',
    'request.required.acks',
    'message.send.max.retries',
  ];
  const acks = raw['request.required.acks'];
  const retries = raw['message.send.max.retries'];
  return {
    brokers: servers
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    clientId: typeof raw['client.id'] === 'string' ? raw['client.id'] : 'downloader-notifier',
    acks: typeof acks === 'number' ? acks : -1,
    retries: typeof retries === 'number' ? retries : undefined,
    ignoredKeys: Object.keys(raw).filter((k) => !known.includes(k)),
  };
}

function backendsOf(raw: Record<string, unknown>): DownloaderConfig['backends'] {
  const out: DownloaderConfig['backends'] = { http: undefined, kafka: undefined };
  for (const [id, value] of Object.entries(raw)) {
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    const settings = isObject ? (value as Record<string, unknown>) : {};
    if (Object.keys(settings).length === 0) continue;
    if (id === 'http') {
      const timeout = settings.timeout ?? 30;
      if (typeof timeout !== 'number' || !(timeout > 0)) {
        fail(
          `backends.http.timeout must be a positive number of seconds (got ${JSON.stringify(timeout)})`,
        );
      }
      out.http = { timeoutMs: timeout * 1000 };
    } else if (id === 'kafka') {
      out.kafka = kafkaBackend(settings);
    } else {
      fail(`Unknown backend id ${JSON.stringify(id)} in backends (known: http, kafka)`);
    }
  }
  if (!out.http && !out.kafka) fail('backends: at least one of http or kafka must be configured');
  return out;
}

function storageRoot(raw: RawConfig['processor']): { rootDir: string; defaulted: boolean } {
  const fs = raw.filestorage;
  if (fs === undefined) return { rootDir: raw.storage_dir, defaulted: true };
  const type = fs.type;
  if (type === 's3') fail('S3 file storage is not supported');
  if (type !== 'filesystem') fail(`Unknown filestorage type ${String(type)}`);
  if (typeof fs.rootdir !== 'string' || fs.rootdir === '') {
    fail('processor.filestorage.rootdir must be a non-empty string');
  }
  return { rootDir: fs.rootdir, defaulted: false };
}

function checkDisk(disk: Disk): void {
  if (!(disk.low_pct < disk.high_pct)) {
    fail(`processor.disk: low_pct (${disk.low_pct}) must be below high_pct (${disk.high_pct})`);
  }
}

/** Turns a checked raw config into the typed one; throws with the original's messages. */
export function buildConfig(
  raw: RawConfig,
  source: string,
  env: NodeJS.ProcessEnv,
): DownloaderConfig {
  const urlError = requestUriError(raw.processor.download_url);
  if (urlError !== undefined) fail(`Could not parse Download URL, ${urlError}`);
  const concurrency = positive(raw.notifier.concurrency);
  if (concurrency === undefined) fail('Notifier Concurrency must be a positive number');
  const deletion = positive(raw.notifier.deletion_interval);
  if (deletion === undefined)
    fail('Notifier deletion_interval must be a positive number of minutes');
  checkDisk(raw.processor.disk);
  const root = storageRoot(raw.processor);
  const first = parseAddr(raw.redis.addr.split(',')[0] ?? '', 'redis.addr');
  const testTime = env.DOWNLOADER_TEST_TIME !== undefined;
  const p = raw.processor;
  return {
    source,
    redis: {
      host: first.host,
      port: first.port,
      sentinels: sentinelsOf(raw.redis),
      masterName: raw.redis.master_name,
      keyPrefix: raw.redis.key_prefix,
    },
    api: {
      heartbeatPath: raw.api.heartbeat_path,
      dashboardHosts: raw.api.dashboard_hosts,
      maxBodyBytes: raw.api.max_body_bytes,
    },
    processor: {
      storageDir: p.storage_dir,
      rootDir: root.rootDir,
      rootDefaulted: root.defaulted,
      downloadUrl: p.download_url,
      requestHeaders: p.request_headers,
      statsIntervalMs: p.stats_interval > 0 ? p.stats_interval : 5000,
      metricsAddr: p.metrics_addr,
      maxDownloadBytes: p.max_download_bytes,
      timeouts: p.timeouts,
      visibilityTimeoutMs: p.visibility_timeout_ms,
      maxInFlight: p.max_in_flight,
      retryAfterMaxS: p.retry_after_max_s,
      ssrfGuard: p.ssrf_guard,
      disk: p.disk,
      shutdownGraceMs: p.shutdown_grace_ms,
    },
    notifier: {
      concurrency: Math.trunc(concurrency) || 1,
      deletionIntervalMs: deletion * 60_000,
      statsIntervalMs: raw.notifier.stats_interval > 0 ? raw.notifier.stats_interval : 5000,
      metricsAddr: raw.notifier.metrics_addr,
      visibilityTimeoutMs: raw.notifier.visibility_timeout_ms,
      shutdownGraceMs: raw.notifier.shutdown_grace_ms,
    },
    backends: backendsOf(raw.backends),
    logLevel: raw.log.level,
    units: testTime
      ? { downloadRetryMs: 200, callbackRetryMs: 200, internalRetryMs: 200 }
      : { downloadRetryMs: 120_000, callbackRetryMs: 600_000, internalRetryMs: 10_000 },
  };
}

/** Reads, checks and builds the config at `path`. Nothing is opened before this returns. */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv): Promise<DownloaderConfig> {
  const raw = await readJsonFile(path);
  const { value } = parseConfig(schema, raw, path);
  return buildConfig(value, path, env);
}
