/**
 * mistry-server configuration (spec §3.2). The original server's `config.json` keeps working: its
 * keys (`projects_path`, `build_path`, `mounts`, `job_concurrency`, `job_backlog`, `UID`, `Addr`)
 * match case-insensitively. Flags win over the file, the file over the defaults.
 */
import { availableParallelism } from 'node:os';
import { realpath, stat, readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import {
  array,
  boolean,
  integer,
  object,
  optional,
  parseConfig,
  parseHostPort,
  readJsonFile,
  record,
  required,
  string,
  withDefault,
} from '../../common/config.js';
import { SkroutzError } from '../../common/errors.js';

export const FILESYSTEMS = ['plain', 'btrfs'] as const;
export type FilesystemKind = (typeof FILESYSTEMS)[number];

const gcSchema = object(
  {
    /** Whether builds are ever collected. Default true. */
    enabled: withDefault(boolean(), true),
    /** Seconds between runs. Default 300. */
    interval_s: withDefault(integer({ min: 1 }), 300),
    /** Hours since last use after which a build goes. Default 336 (two weeks). */
    max_age_h: withDefault(integer({ min: 0 }), 336),
    /** Ready builds kept per project, least recently used go first; 0 = no limit. */
    keep_per_project: withDefault(integer({ min: 0 }), 0),
    /** statfs used percentage that starts disk GC. Default 90. */
    disk_high_pct: withDefault(integer({ min: 1, max: 100 }), 90),
    /** Disk GC removes builds until used is at or below this. Default 80. */
    disk_low_pct: withDefault(integer({ min: 0, max: 100 }), 80),
    /** A build answered within this many seconds is never collected. Default 3600. */
    min_idle_s: withDefault(integer({ min: 0 }), 3600),
  },
  'warn',
);

const schema = object(
  {
    projects_path: required(string({ nonEmpty: true })),
    build_path: required(string({ nonEmpty: true })),
    /** Extra rw binds, host path → container path. */
    mounts: withDefault(record(string({ nonEmpty: true })), () => ({})),
    /** Builds executing at once; 0 = CPU count. */
    job_concurrency: withDefault(integer({ min: 0 }), 0),
    /** Builds waiting before 503; 0 = 2 × job_concurrency. */
    job_backlog: withDefault(integer({ min: 0 }), 0),
    /** Container user and `uid` build arg; default the server's uid. */
    uid: optional(string({ nonEmpty: true })),
    addr: optional(string()),
    filesystem: optional(string()),
    /** Per-build limit in seconds, 0 = none. Default 3600. */
    build_timeout_s: withDefault(integer({ min: 0 }), 3600),
    project_settings: withDefault(
      record(object({ build_timeout_s: optional(integer({ min: 0 })) }, 'warn')),
      (): Record<string, { build_timeout_s: number | undefined }> => ({}),
    ),
    /** Seconds running builds get to finish at shutdown. Default 120. */
    shutdown_grace_s: withDefault(integer({ min: 0 }), 120),
    /** POST /jobs body limit. Default 16 MiB. */
    max_body_bytes: withDefault(integer({ min: 1 }), 16 * 1024 * 1024),
    gc: withDefault(gcSchema, () => ({
      enabled: true,
      interval_s: 300,
      max_age_h: 336,
      keep_per_project: 0,
      disk_high_pct: 90,
      disk_low_pct: 80,
      min_idle_s: 3600,
    })),
    auth: withDefault(
      object(
        {
          tokens: withDefault(array(string({ nonEmpty: true })), () => []),
          tokens_file: optional(string()),
        },
        'warn',
      ),
      () => ({ tokens: [] as string[], tokens_file: undefined as string | undefined }),
    ),
    rsync: withDefault(
      object(
        {
          enabled: withDefault(boolean(), false),
          address: withDefault(string({ nonEmpty: true }), '0.0.0.0'),
          port: withDefault(integer({ min: 0, max: 65535 }), 873),
          hosts_allow: withDefault(string(), ''),
          max_connections: withDefault(integer({ min: 0 }), 0),
        },
        'warn',
      ),
      () => ({
        enabled: false,
        address: '0.0.0.0',
        port: 873,
        hosts_allow: '',
        max_connections: 0,
      }),
    ),
  },
  'warn',
);

export interface GcSettings {
  enabled: boolean;
  intervalS: number;
  maxAgeH: number;
  keepPerProject: number;
  diskHighPct: number;
  diskLowPct: number;
  minIdleS: number;
}

export interface RsyncSettings {
  enabled: boolean;
  address: string;
  port: number;
  hostsAllow: string;
  maxConnections: number;
}

/** The checked configuration, paths resolved to absolute real paths. */
export interface ServerConfig {
  configPath: string;
  projectsPath: string;
  buildPath: string;
  mounts: Record<string, string>;
  jobConcurrency: number;
  jobBacklog: number;
  uid: string;
  host: string;
  port: number;
  filesystem: FilesystemKind;
  buildTimeoutS: number;
  projectTimeoutsS: Record<string, number>;
  shutdownGraceS: number;
  maxBodyBytes: number;
  gc: GcSettings;
  tokens: string[];
  rsync: RsyncSettings;
}

export interface ConfigFlags {
  addr?: string;
  filesystem?: string;
}

export const DEFAULT_CONFIG_PATH = '/etc/skroutz-infra/mistry-server.json';
export const DEFAULT_ADDR = '0.0.0.0:8462';

/** A start error: printed as one line on stderr, exit 1. */
export class StartError extends SkroutzError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_START', message, options);
  }
}

const CANONICAL = [
  'projects_path',
  'build_path',
  'mounts',
  'job_concurrency',
  'job_backlog',
  'uid',
  'addr',
  'filesystem',
  'build_timeout_s',
  'project_settings',
  'shutdown_grace_s',
  'max_body_bytes',
  'gc',
  'auth',
  'rsync',
];

/** Maps top-level keys to their canonical spelling case-insensitively; the exact spelling wins. */
export function canonicalKeys(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const out: Record<string, unknown> = {};
  const input = raw as Record<string, unknown>;
  for (const [key, value] of Object.entries(input)) {
    const canonical = CANONICAL.find((name) => name === key.toLowerCase()) ?? key;
    if (canonical !== key && Object.hasOwn(input, canonical)) continue;
    out[canonical] = value;
  }
  return out;
}

async function directory(path: string, key: string, base: string): Promise<string> {
  const absolute = isAbsolute(path) ? path : resolve(base, path);
  try {
    const real = await realpath(absolute);
    if (!(await stat(real)).isDirectory())
      throw new StartError(`${key} ${path} is not a directory`);
    return real;
  } catch (err) {
    if (err instanceof StartError) throw err;
    throw new StartError(`${key} ${path} does not exist or cannot be read`, { cause: err });
  }
}

async function readTokens(file: string | undefined): Promise<string[]> {
  if (file === undefined || file === '') return [];
  try {
    const text = await readFile(file, 'utf8');
    return text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
  } catch (err) {
    throw new StartError(`auth.tokens_file ${file} cannot be read`, { cause: err });
  }
}

/** Reads, checks and resolves the config; throws StartError with the original's texts. */
export async function loadConfig(
  path: string,
  flags: ConfigFlags,
  cwd: string,
  warn: (key: string) => void,
): Promise<ServerConfig> {
  let parsed;
  try {
    const raw = canonicalKeys(await readJsonFile(resolve(cwd, path)));
    parsed = parseConfig(schema, raw, path);
  } catch (err) {
    const message = err instanceof Error ? err.message.replace(/\n\s*/g, '; ') : String(err);
    throw new StartError(`cannot parse configuration; ${message}`, { cause: err });
  }
  for (const key of parsed.warnings) warn(key);
  const file = parsed.value;
  const filesystem = flags.filesystem ?? file.filesystem ?? 'plain';
  if (!(FILESYSTEMS as readonly string[]).includes(filesystem)) {
    throw new StartError(`unknown filesystem '${filesystem}'`);
  }
  const addr = flags.addr ?? file.addr ?? DEFAULT_ADDR;
  if (addr === '') throw new StartError('addr must be provided');
  const hostPort = parseHostPort(addr);
  if (!hostPort)
    throw new StartError(`addr '${addr}' must be host:port with a port from 0 to 65535`);
  const concurrency = file.job_concurrency > 0 ? file.job_concurrency : availableParallelism();
  const projectTimeoutsS: Record<string, number> = {};
  for (const [name, settings] of Object.entries(file.project_settings)) {
    if (settings.build_timeout_s !== undefined) projectTimeoutsS[name] = settings.build_timeout_s;
  }
  const gc = file.gc;
  if (gc.disk_low_pct > gc.disk_high_pct) {
    throw new StartError(
      `cannot parse configuration; gc.disk_low_pct (${gc.disk_low_pct}) must not exceed gc.disk_high_pct (${gc.disk_high_pct})`,
    );
  }
  const buildPath = await directory(file.build_path, 'build_path', cwd);
  const projectsPath = await directory(file.projects_path, 'projects_path', cwd);
  return {
    configPath: resolve(cwd, path),
    projectsPath,
    buildPath,
    mounts: file.mounts,
    jobConcurrency: concurrency,
    jobBacklog: file.job_backlog > 0 ? file.job_backlog : 2 * concurrency,
    uid: file.uid ?? String(process.getuid?.() ?? 0),
    host: hostPort.host,
    port: hostPort.port,
    filesystem: filesystem as FilesystemKind,
    buildTimeoutS: file.build_timeout_s,
    projectTimeoutsS,
    shutdownGraceS: file.shutdown_grace_s,
    maxBodyBytes: file.max_body_bytes,
    gc: {
      enabled: gc.enabled,
      intervalS: gc.interval_s,
      maxAgeH: gc.max_age_h,
      keepPerProject: gc.keep_per_project,
      diskHighPct: gc.disk_high_pct,
      diskLowPct: gc.disk_low_pct,
      minIdleS: gc.min_idle_s,
    },
    tokens: [...file.auth.tokens, ...(await readTokens(file.auth.tokens_file))],
    rsync: {
      enabled: file.rsync.enabled,
      address: file.rsync.address,
      port: file.rsync.port,
      hostsAllow: file.rsync.hosts_allow,
      maxConnections: file.rsync.max_connections,
    },
  };
}

/** The config as logged at start: tokens masked. */
export function describeConfig(config: ServerConfig): Record<string, unknown> {
  return { ...config, tokens: config.tokens.map(() => '***') };
}
