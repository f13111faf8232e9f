/**
 * The tenant table: configs turned into what the request path needs (host map, hashed secrets,
 * redirect keys, bot matcher, rate-limit bucket, hash-mode sessions). Swapped whole on reload.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ScratchdConfig, TenantConfig } from './config.js';
import { SessionCache } from './identity.js';
import { BotMatcher } from './ip.js';
import { TokenBucket } from './rate-limit.js';

export interface Tenant {
  readonly name: string;
  readonly config: TenantConfig;
  readonly origins: ReadonlySet<string>;
  readonly hosts: ReadonlySet<string>;
  readonly secrets: readonly Buffer[];
  readonly redirectKeys: readonly Buffer[];
  readonly bots: BotMatcher;
  readonly bucket: TokenBucket | undefined;
  readonly sessions: SessionCache | undefined;
}

export function normalizeHost(host: string | undefined): string {
  if (host === undefined) return '';
  const lowered = host.trim().toLowerCase();
  if (lowered.startsWith('[')) return lowered.slice(0, lowered.indexOf(']') + 1);
  return lowered.replace(/:\d*$/, '');
}

export class TenantTable {
  private readonly byHost = new Map<string, Tenant>();
  private readonly byName = new Map<string, Tenant>();
  private readonly catchAll: Tenant | undefined;

  constructor(config: ScratchdConfig, env: NodeJS.ProcessEnv, previous?: TenantTable) {
    let catchAll: Tenant | undefined;
    for (const [name, tenantConfig] of Object.entries(config.tenants)) {
      const old = previous?.byName.get(name);
      const tenant = buildTenant(name, tenantConfig, env, old);
      this.byName.set(name, tenant);
      for (const host of tenantConfig.hosts) {
        if (host === '*') catchAll = tenant;
        else this.byHost.set(normalizeHost(host), tenant);
      }
    }
    this.catchAll = catchAll;
  }

  /** `tid`, else `Host`, else the catch-all tenant (§3.7 step 1). */
  resolve(tid: string | undefined, host: string | undefined): Tenant | undefined {
    if (tid !== undefined && tid !== '') return this.byName.get(tid);
    return this.byHost.get(normalizeHost(host)) ?? this.catchAll;
  }

  get(name: string): Tenant | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}

function sameRate(a: TenantConfig['rate_limit'], b: TenantConfig['rate_limit']): boolean {
  return a?.events_per_s === b?.events_per_s && a?.burst === b?.burst;
}

function buildTenant(
  name: string,
  config: TenantConfig,
  env: NodeJS.ProcessEnv,
  old: Tenant | undefined,
): Tenant {
  const rate = config.rate_limit;
  // An unchanged rate limit keeps its bucket across a reload, so a reload is no burst reset.
  const bucket =
    rate === undefined
      ? undefined
      : old !== undefined && old.bucket !== undefined && sameRate(old.config.rate_limit, rate)
        ? old.bucket
        : new TokenBucket(rate.events_per_s, rate.burst);
  const identity = config.identity;
  const sessions =
    identity.mode !== 'hash'
      ? undefined
      : (old?.sessions ??
        new SessionCache(identity.session_cache_entries, identity.session_idle_min * 60_000));
  return {
    name,
    config,
    origins: new Set(config.allowed_origins),
    hosts: new Set(config.hosts.map(normalizeHost)),
    secrets: config.secrets_sha256.map((hex) => Buffer.from(hex, 'hex')),
    redirectKeys: config.redirect_key_envs
      .map((v) => Buffer.from(env[v] ?? '', 'utf8'))
      .filter((k) => k.length > 0),
    bots: new BotMatcher(config.bot_patterns),
    bucket,
    sessions,
  };
}

/** Whether `secret` hashes to one of the tenant's `secrets_sha256`, in constant time. */
export function checkSecret(tenant: Tenant, secret: string): boolean {
  const digest = createHash('sha256').update(secret, 'utf8').digest();
  let ok = false;
  for (const expected of tenant.secrets) ok = timingSafeEqual(digest, expected) || ok;
  return ok;
}

/**
 * `/r` signatures: HMAC-SHA256(key, tenant + "\n" + to) in lowercase hex, any key of the tenant.
 */
export function signRedirect(key: Buffer | string, tenant: string, to: string): string {
  return createHmac('sha256', key).update(`${tenant}\n${to}`, 'utf8').digest('hex');
}

export function checkRedirect(tenant: Tenant, to: string, sig: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(sig)) return false;
  const given = Buffer.from(sig, 'hex');
  let ok = false;
  for (const key of tenant.redirectKeys) {
    ok = timingSafeEqual(Buffer.from(signRedirect(key, tenant.name, to), 'hex'), given) || ok;
  }
  return ok;
}
