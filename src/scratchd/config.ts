/**
 * scratchd's JSON configuration (spec §3.5): the schema with every default, the checks across
 * keys that `check` runs (hosts, sink names, topics, environment), and the built-in config used
 * when no file is given and the default one is absent.
 */
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import {
  array,
  boolean,
  hostPort,
  integer,
  number,
  object,
  oneOf,
  optional,
  parseConfig,
  record,
  required,
  string,
  withDefault,
  type ParseContext,
  type Rule,
} from '../common/config.js';
import { ConfigError, type ConfigIssue } from '../common/errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/skroutz-infra/scratchd.json';
const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
export const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

const limits = object({
  /** Pixel URL limit, KiB. */
  pixel_url_kb: withDefault(integer({ min: 1, max: 64 }), 8),
  /** `/e` body limit (inflated), KiB. */
  event_body_kb: withDefault(integer({ min: 1, max: 16_384 }), 64),
  /** `/batch` body limit (inflated), KiB. */
  batch_body_kb: withDefault(integer({ min: 1, max: 65_536 }), 1024),
  /** Events per `/batch`. */
  batch_events: withDefault(integer({ min: 1, max: 100_000 }), 500),
  /** Open sockets on the public listener. */
  max_connections: withDefault(integer({ min: 1, max: 1_000_000 }), 10_000),
  /** Request line plus headers, KiB (Node's maxHeaderSize). */
  header_kb: withDefault(integer({ min: 1, max: 1024 }), 16),
  headers_timeout_ms: withDefault(integer({ min: 100, max: 600_000 }), 10_000),
  request_timeout_ms: withDefault(integer({ min: 100, max: 600_000 }), 15_000),
  keep_alive_timeout_ms: withDefault(integer({ min: 100, max: 600_000 }), 5000),
});

const identity = object({
  mode: withDefault(oneOf(['cookie', 'hash', 'client']), 'cookie'),
  cookie_domain: optional(string({ pattern: /^[A-Za-z0-9.-]{1,253}$/ })),
  visitor_cookie: withDefault(string({ pattern: /^[A-Za-z0-9_-]{1,64}$/ }), '_scr_v'),
  visitor_days: withDefault(integer({ min: 1, max: 3650 }), 365),
  session_cookie: withDefault(string({ pattern: /^[A-Za-z0-9_-]{1,64}$/ }), '_scr_s'),
  session_idle_min: withDefault(integer({ min: 1, max: 1440 }), 30),
  secure: withDefault(boolean(), true),
  same_site: withDefault(oneOf(['Strict', 'Lax', 'None']), 'Lax'),
  session_cache_entries: withDefault(integer({ min: 1, max: 10_000_000 }), 100_000),
});

const privacy = object({
  honor_dnt: withDefault(boolean(), true),
  honor_gpc: withDefault(boolean(), true),
  on_opt_out: withDefault(oneOf(['anonymize', 'drop']), 'anonymize'),
  ip: withDefault(oneOf(['truncate', 'drop', 'keep']), 'truncate'),
});

const tenant = object({
  hosts: required(array(string({ nonEmpty: true }), { minItems: 1 })),
  allowed_origins: withDefault(array(string({ pattern: /^https?:\/\/[^/\s]+$/ })), () => []),
  check_referer_host: withDefault(boolean(), false),
  secrets_sha256: withDefault(array(string({ pattern: /^[0-9a-f]{64}$/ })), () => []),
  redirect_key_envs: withDefault(array(string({ pattern: /^[A-Za-z_][A-Za-z0-9_]*$/ })), () => []),
  identity: withDefault(identity, () => identity.parse({}, '', quiet()) as IdentityConfig),
  privacy: withDefault(privacy, () => privacy.parse({}, '', quiet()) as PrivacyConfig),
  bots: withDefault(oneOf(['flag', 'drop']), 'flag'),
  bot_patterns: withDefault(array(string({ nonEmpty: true })), () => []),
  rate_limit: optional(
    object({
      events_per_s: required(number({ min: 0.001, max: 10_000_000 })),
      burst: required(integer({ min: 1, max: 10_000_000 })),
    }),
  ),
  durability: withDefault(oneOf(['queued', 'durable']), 'queued'),
  sinks: required(array(string({ pattern: NAME }), { minItems: 1 })),
  client_ts_past_s: withDefault(integer({ min: 0, max: 315_360_000 }), 604_800),
  client_ts_future_s: withDefault(integer({ min: 0, max: 315_360_000 }), 3600),
  keep_unknown_params: withDefault(boolean(), false),
  allow_debug: withDefault(boolean(), true),
});

/** Keys every sink type takes. */
const common = {
  batch_events: withDefault(integer({ min: 1, max: 100_000 }), 500),
  batch_bytes: withDefault(integer({ min: 1024, max: 256 * 1024 * 1024 }), 1_048_576),
  linger_ms: withDefault(integer({ min: 0, max: 60_000 }), 50),
  unhealthy_after: withDefault(integer({ min: 1, max: 1000 }), 3),
  backoff_base_ms: withDefault(integer({ min: 1, max: 600_000 }), 100),
  backoff_max_ms: withDefault(integer({ min: 1, max: 3_600_000 }), 30_000),
  spool_max_mb: optional(number({ min: 0.001, max: 10_485_760 })),
};
const type = <T extends string>(name: T) => required(oneOf([name] as const));

const sinkSchemas = {
  file: object({
    type: type('file'),
    ...common,
    dir: withDefault(string({ nonEmpty: true }), 'events'),
    segment_mb: withDefault(number({ min: 0.001, max: 65_536 }), 128),
    segment_s: withDefault(integer({ min: 1, max: 86_400 }), 300),
    fsync: withDefault(oneOf(['batch', 'interval', 'none']), 'batch'),
    fsync_ms: withDefault(integer({ min: 1, max: 60_000 }), 100),
  }),
  redis: object({
    type: type('redis'),
    ...common,
    url: required(string({ pattern: /^rediss?:\/\/\S+$/ })),
    mode: withDefault(oneOf(['stream', 'list']), 'stream'),
    key: withDefault(string({ nonEmpty: true }), 'scratchd:{tenant}'),
    maxlen: withDefault(integer({ min: 0, max: 1e12 }), 0),
    command_timeout_ms: withDefault(integer({ min: 10, max: 600_000 }), 5000),
  }),
  kafka: object({
    type: type('kafka'),
    ...common,
    brokers: required(array(string({ pattern: /^[^\s:]+:\d{1,5}$/ }), { minItems: 1 })),
    client_id: optional(string({ nonEmpty: true })),
    topic: withDefault(string({ nonEmpty: true }), 'analytics.{tenant}'),
    key: withDefault(oneOf(['visitor_id', 'id', 'session_id', 'none']), 'visitor_id'),
    compression: withDefault(oneOf(['gzip', 'none']), 'gzip'),
    idempotent: withDefault(boolean(), false),
    request_timeout_ms: withDefault(integer({ min: 100, max: 600_000 }), 30_000),
  }),
  rafka: object({
    type: type('rafka'),
    ...common,
    url: required(string({ pattern: /^redis:\/\/[^/\s]+\/?$/ })),
    topic: withDefault(string({ nonEmpty: true }), 'analytics.{tenant}'),
    key: withDefault(oneOf(['visitor_id', 'id', 'session_id', 'none']), 'visitor_id'),
    dump_timeout_ms: withDefault(integer({ min: 1, max: 600_000 }), 5000),
  }),
  stdout: object({ type: type('stdout'), ...common }),
};

type Schemas = typeof sinkSchemas;
type RuleValue<R> = R extends Rule<infer T> ? T : never;
export type SinkConfigOf<K extends keyof Schemas> = RuleValue<Schemas[K]>;
export type SinkConfig = { [K in keyof Schemas]: SinkConfigOf<K> }[keyof Schemas];

const SINK_TYPES = Object.keys(sinkSchemas) as (keyof Schemas)[];

/** Picks the sink's schema from its `type`, so each type's keys are checked on their own. */
const sink: Rule<SinkConfig> = {
  describe: `must be an object with "type" one of ${SINK_TYPES.join(', ')}`,
  parse(value, path, ctx) {
    const kind = (value as { type?: unknown } | null)?.type;
    const schema = typeof kind === 'string' ? sinkSchemas[kind as keyof Schemas] : undefined;
    if (schema === undefined) {
      const where = path === '' ? 'type' : `${path}.type`;
      ctx.issues.push({
        path: where,
        rule: `must be one of ${SINK_TYPES.join(', ')}`,
        value: kind,
      });
      return undefined;
    }
    return schema.parse(value, path, ctx);
  },
};

const schema = object({
  instance: withDefault(string({ pattern: /^[A-Za-z0-9._-]{1,64}$/ }), () => safeHostname()),
  listen: withDefault(hostPort(), { host: '0.0.0.0', port: 8080 }),
  admin_listen: withDefault(hostPort(), { host: '127.0.0.1', port: 9181 }),
  data_dir: withDefault(string({ nonEmpty: true }), '/var/lib/scratchd'),
  trusted_proxies: withDefault(array(string({ nonEmpty: true })), () => [
    '127.0.0.1/32',
    '::1/128',
  ]),
  memory_budget_mb: withDefault(number({ min: 1, max: 65_536 }), 64),
  limits: withDefault(limits, () => limits.parse({}, '', quiet()) as LimitsConfig),
  spool: withDefault(
    object({
      max_mb: withDefault(number({ min: 0.001, max: 10_485_760 }), 10_240),
      segment_mb: withDefault(number({ min: 0.001, max: 4096 }), 64),
      fsync_ms: withDefault(integer({ min: 1, max: 60_000 }), 20),
    }),
    () => ({ max_mb: 10_240, segment_mb: 64, fsync_ms: 20 }),
  ),
  wal: withDefault(
    object({
      segment_mb: withDefault(number({ min: 0.001, max: 4096 }), 64),
      fsync_ms: withDefault(integer({ min: 1, max: 60_000 }), 10),
    }),
    () => ({ segment_mb: 64, fsync_ms: 10 }),
  ),
  shutdown: withDefault(
    object({
      pre_stop_ms: withDefault(integer({ min: 0, max: 600_000 }), 2000),
      inflight_ms: withDefault(integer({ min: 0, max: 600_000 }), 5000),
      drain_ms: withDefault(integer({ min: 0, max: 600_000 }), 10_000),
    }),
    () => ({ pre_stop_ms: 2000, inflight_ms: 5000, drain_ms: 10_000 }),
  ),
  tenants: required(record(tenant, NAME)),
  sinks: required(record(sink, NAME)),
});

export type ScratchdConfig = RuleValue<typeof schema>;
export type TenantConfig = RuleValue<typeof tenant>;
export type IdentityConfig = RuleValue<typeof identity>;
export type PrivacyConfig = RuleValue<typeof privacy>;
export type LimitsConfig = RuleValue<typeof limits>;

function quiet(): ParseContext {
  return { issues: [], warnings: [] };
}

function safeHostname(): string {
  const name = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 64);
  return name === '' ? 'scratchd' : name;
}

/** `{tenant}` is the only placeholder in topic and key templates. */
export function renderTemplate(template: string, tenantName: string): string {
  return template.replaceAll('{tenant}', tenantName);
}

function validCidr(text: string): boolean {
  const match = /^(.+)\/(\d{1,3})$/.exec(text);
  if (!match) return false;
  const bits = Number(match[2]);
  const ip = match[1] ?? '';
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) return bits <= 32 && ip.split('.').every((o) => +o < 256);
  return ip.includes(':') && bits <= 128;
}

/** The checks across keys (§3.5 `check`), each returning `path: rule` issues. */
function crossCheck(config: ScratchdConfig, env: NodeJS.ProcessEnv): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const tenants = Object.entries(config.tenants);
  if (tenants.length === 0) issues.push({ path: 'tenants', rule: 'must name at least one tenant' });
  config.trusted_proxies.forEach((cidr, i) => {
    if (!validCidr(cidr)) {
      issues.push({
        path: `trusted_proxies[${i}]`,
        rule: 'must be a CIDR such as 10.0.0.0/8',
        value: cidr,
      });
    }
  });
  const owner = new Map<string, string>();
  for (const [name, t] of tenants) {
    t.hosts.forEach((host, i) => {
      const key = host.toLowerCase().replace(/:\d+$/, '');
      const previous = owner.get(key);
      if (previous !== undefined) {
        const rule =
          key === '*'
            ? `only one tenant may be the catch-all "*" (also ${previous})`
            : `duplicate host, also in tenant ${previous}`;
        issues.push({ path: `tenants.${name}.hosts[${i}]`, rule, value: host });
      } else owner.set(key, name);
    });
    t.sinks.forEach((sinkName, i) => {
      const target = config.sinks[sinkName];
      if (target === undefined) {
        issues.push({
          path: `tenants.${name}.sinks[${i}]`,
          rule: 'names no sink in "sinks"',
          value: sinkName,
        });
        return;
      }
      if (target.type === 'kafka' || target.type === 'rafka') {
        const topic = renderTemplate(target.topic, name);
        if (!TOPIC.test(topic)) {
          issues.push({
            path: `sinks.${sinkName}.topic`,
            rule: `must render to a topic matching ${String(TOPIC)} (tenant ${name} gives ${JSON.stringify(topic)})`,
            value: target.topic,
          });
        }
      }
    });
    t.redirect_key_envs.forEach((variable, i) => {
      if ((env[variable] ?? '') === '') {
        issues.push({
          path: `tenants.${name}.redirect_key_envs[${i}]`,
          rule: `names environment variable ${variable}, which is not set or empty`,
          value: variable,
        });
      }
    });
    t.bot_patterns.forEach((pattern, i) => {
      try {
        new RegExp(pattern, 'i');
      } catch (err) {
        issues.push({
          path: `tenants.${name}.bot_patterns[${i}]`,
          rule: `must be a valid regular expression (${(err as Error).message})`,
          value: pattern,
        });
      }
    });
  }
  for (const [name, s] of Object.entries(config.sinks)) {
    if (s.backoff_max_ms < s.backoff_base_ms) {
      issues.push({
        path: `sinks.${name}.backoff_max_ms`,
        rule: 'must be >= backoff_base_ms',
        value: s.backoff_max_ms,
      });
    }
  }
  return issues;
}

/** Parses and checks a raw config; throws one ConfigError with every problem. */
export function buildConfig(
  raw: unknown,
  source: string,
  env: NodeJS.ProcessEnv,
  cwd: string,
): ScratchdConfig {
  const { value } = parseConfig(schema, raw, source);
  const issues = crossCheck(value, env);
  if (issues.length > 0) throw new ConfigError(source, issues);
  if (!isAbsolute(value.data_dir)) value.data_dir = resolve(cwd, value.data_dir);
  return value;
}

/** The built-in config: one catch-all tenant writing JSONL under ./scratchd-data (§3.1). */
export function builtInConfig(): Record<string, unknown> {
  return {
    data_dir: 'scratchd-data',
    tenants: { default: { hosts: ['*'], identity: { mode: 'cookie' }, sinks: ['archive'] } },
    sinks: { archive: { type: 'file', dir: 'events' } },
  };
}

/** One `path: message` line per problem, as `check` prints them. */
export function issueLines(err: ConfigError): string[] {
  return err.message
    .split('\n')
    .slice(1)
    .map((line) => line.trim());
}
