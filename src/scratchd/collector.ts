/**
 * The part of the request pipeline after validation (§3.7 steps 4-8): opt-out, bots, identity,
 * the envelope, admission against every target sink, and the WAL for `durable` tenants.
 */
import { isIP } from 'node:net';
import type { Dispatcher } from './dispatcher.js';
import { buildEnvelope, type DropReason, type EventFields, type Source } from './event.js';
import { cookieIdentity, hashIdentity, type Salts } from './identity.js';
import { applyIpRule, normalizeIp } from './ip.js';
import { ChildCache, type Metrics } from './metrics.js';
import type { Tenant } from './tenants.js';
import { uuidv7 } from './uuid.js';
import type { Wal } from './wal.js';

/** What the request itself tells about every event it carries. */
export interface RequestContext {
  source: Source;
  receivedAt: number;
  /** The client IP before any privacy rule; never stored as is unless `ip: keep`. */
  rawIp: string | null;
  ua: string | null;
  lang: string | null;
  dnt: boolean;
  gpc: boolean;
  cookieHeader: string | undefined;
  trusted: boolean;
  /** Cookie identity is worked out once per request and shared by its events. */
  cookies?: { visitorId: string; sessionId: string; setCookies: string[] };
}

export type Outcome =
  | { status: 'accepted'; id: string; envelope: Record<string, unknown>; setCookies: string[] }
  | { status: 'dropped' | 'rejected'; reason: string; envelope?: Record<string, unknown> };

export interface CollectorDeps {
  instance: () => string;
  dispatchers: () => ReadonlyMap<string, Dispatcher>;
  metrics: Metrics;
  salts: () => Salts;
  wal: Wal;
}

export class Collector {
  private readonly acceptedCount: ChildCache<{ inc(): void }>;

  constructor(private readonly deps: CollectorDeps) {
    this.acceptedCount = new ChildCache((l) => deps.metrics.accepted.labels(l));
  }

  countDrops(tenant: string, drops: readonly DropReason[]): void {
    for (const reason of drops) this.deps.metrics.fieldsDropped.inc({ tenant, reason });
  }

  optedOut(tenant: Tenant, req: RequestContext): boolean {
    const privacy = tenant.config.privacy;
    return (privacy.honor_dnt && req.dnt) || (privacy.honor_gpc && req.gpc);
  }

  /** Steps 4 (opt-out, bots) before the rate limit: undefined when the event goes on. */
  screen(tenant: Tenant, fields: EventFields, req: RequestContext): Outcome | undefined {
    if (this.optedOut(tenant, req) && tenant.config.privacy.on_opt_out === 'drop') {
      this.deps.metrics.dropped.inc({ tenant: tenant.name, reason: 'opt_out' });
      return { status: 'dropped', reason: 'opt_out' };
    }
    const ua = req.trusted && fields.ua !== null ? fields.ua : req.ua;
    if (tenant.config.bots === 'drop' && tenant.bots.isBot(ua)) {
      this.deps.metrics.dropped.inc({ tenant: tenant.name, reason: 'bot' });
      return { status: 'dropped', reason: 'bot' };
    }
    return undefined;
  }

  /** Steps 6-8: identity, envelope, admission; resolves once the event is handed over. */
  async accept(tenant: Tenant, fields: EventFields, req: RequestContext): Promise<Outcome> {
    const anonymize = this.optedOut(tenant, req);
    const ua = req.trusted && fields.ua !== null ? fields.ua : req.ua;
    let rawIp = req.rawIp;
    if (req.trusted && fields.ip !== null) {
      if (isIP(fields.ip) !== 0) rawIp = normalizeIp(fields.ip);
      else this.deps.metrics.fieldsDropped.inc({ tenant: tenant.name, reason: 'untrusted' });
    }
    let ids = {
      visitorId: null as string | null,
      sessionId: null as string | null,
      userId: null as string | null,
    };
    let setCookies: string[] = [];
    if (!anonymize) {
      ids = this.identify(tenant, fields, req, rawIp, ua);
      setCookies = req.cookies?.setCookies ?? [];
    }
    const id = fields.id ?? uuidv7(req.receivedAt);
    const envelope = buildEnvelope(tenant.name, id, req.receivedAt, fields, ids, {
      ip: anonymize ? null : applyIpRule(rawIp, tenant.config.privacy.ip),
      ua,
      lang: req.lang,
      bot: tenant.bots.isBot(ua),
      dnt: anonymize,
      clockSkew: fields.clockSkew,
      trusted: req.trusted,
      source: req.source,
      instance: this.deps.instance(),
    });
    const data = Buffer.from(JSON.stringify(envelope), 'utf8');
    const meta = {
      id,
      tenant: tenant.name,
      receivedAt: req.receivedAt,
      visitorId: ids.visitorId,
      sessionId: ids.sessionId,
    };
    const admitted = await this.admit(tenant, data, meta);
    if (!admitted) {
      this.deps.metrics.dropped.inc({ tenant: tenant.name, reason: 'spool_full' });
      return {
        status: 'dropped',
        reason: 'spool_full',
        envelope: envelope as unknown as Record<string, unknown>,
      };
    }
    this.acceptedCount.get({ tenant: tenant.name }).inc();
    return {
      status: 'accepted',
      id,
      envelope: envelope as unknown as Record<string, unknown>,
      setCookies,
    };
  }

  private identify(
    tenant: Tenant,
    fields: EventFields,
    req: RequestContext,
    rawIp: string | null,
    ua: string | null,
  ): { visitorId: string | null; sessionId: string | null; userId: string | null } {
    const identity = tenant.config.identity;
    const userId = req.trusted ? fields.userId : null;
    if (req.trusted && (fields.visitorId !== null || fields.sessionId !== null)) {
      return { visitorId: fields.visitorId, sessionId: fields.sessionId, userId };
    }
    if (identity.mode === 'client')
      return { visitorId: fields.visitorId, sessionId: fields.sessionId, userId };
    if (identity.mode === 'hash' && tenant.sessions !== undefined) {
      const hashed = hashIdentity(
        this.deps.salts(),
        tenant.sessions,
        tenant.name,
        rawIp ?? '',
        ua ?? '',
        req.receivedAt,
      );
      return { ...hashed, userId };
    }
    req.cookies ??= cookieIdentity(req.cookieHeader, identity);
    return { visitorId: req.cookies.visitorId, sessionId: req.cookies.sessionId, userId };
  }

  /** §3.9 admission: every target that can take the event gets it; none can: not accepted. */
  private async admit(
    tenant: Tenant,
    data: Buffer,
    meta: {
      id: string;
      tenant: string;
      receivedAt: number;
      visitorId: string | null;
      sessionId: string | null;
    },
  ): Promise<boolean> {
    const all = this.deps.dispatchers();
    const targets: Dispatcher[] = [];
    for (const name of tenant.config.sinks) {
      const dispatcher = all.get(name);
      if (dispatcher === undefined) continue;
      if (dispatcher.canAccept(data.length)) targets.push(dispatcher);
      else this.deps.metrics.sinkDropped.inc({ sink: name, reason: 'spool_full' });
    }
    if (targets.length === 0) return false;
    let settle: (() => void) | undefined;
    if (tenant.config.durability === 'durable') {
      try {
        settle = await this.deps.wal.append(data, targets.length);
      } catch {
        return false;
      }
    }
    for (const dispatcher of targets) {
      if (!dispatcher.push({ data, meta, settle })) {
        this.deps.metrics.sinkDropped.inc({ sink: dispatcher.name, reason: 'spool_full' });
        settle?.();
      }
    }
    return true;
  }
}
