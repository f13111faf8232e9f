/**
 * The part of the request pipeline after validation (§3.7 steps 4-8): opt-out, bots, identity,
 * the envelope, admission against every target sink, and the WAL for `durable` tenants.
 */
import { isIP } from 'node:net';
import type { Dispatcher } from './dispatcher.js';
import {
  buildEnvelope,
  type DropReason,
  type Envelope,
  type EventFields,
  type Source,
} from './event.js';
import { cookieIdentity, hashIdentity, type Salts } from './identity.js';
import { applyIpRule, normalizeIp } from './ip.js';
import type { Metrics, Tally } from './metrics.js';
import type { SinkEvent } from './sinks/types.js';
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

interface Ids {
  visitorId: string | null;
  sessionId: string | null;
  userId: string | null;
}
const NO_IDS: Ids = { visitorId: null, sessionId: null, userId: null };
const NO_COOKIES: string[] = [];

export interface CollectorDeps {
  instance: () => string;
  dispatchers: () => ReadonlyMap<string, Dispatcher>;
  metrics: Metrics;
  salts: () => Salts;
  wal: Wal;
}

export class Collector {
  /** `accepted` tallies by tenant name. */
  private readonly acceptedCount = new Map<string, Tally>();

  constructor(private readonly deps: CollectorDeps) {}

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

  /**
   * Steps 6-8: identity, envelope, admission. A `queued` tenant's event is handed over before this
   * returns, so the answer needs no promise; a `durable` one resolves after its WAL group fsync.
   */
  accept(tenant: Tenant, fields: EventFields, req: RequestContext): Outcome | Promise<Outcome> {
    const anonymize = this.optedOut(tenant, req);
    const ua = req.trusted && fields.ua !== null ? fields.ua : req.ua;
    let rawIp = req.rawIp;
    if (req.trusted && fields.ip !== null) {
      if (isIP(fields.ip) !== 0) rawIp = normalizeIp(fields.ip);
      else this.deps.metrics.fieldsDropped.inc({ tenant: tenant.name, reason: 'untrusted' });
    }
    const ids = anonymize ? NO_IDS : this.identify(tenant, fields, req, rawIp, ua);
    const setCookies = anonymize ? NO_COOKIES : (req.cookies?.setCookies ?? NO_COOKIES);
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
    const event: SinkEvent = {
      data: Buffer.from(JSON.stringify(envelope), 'utf8'),
      meta: {
        id,
        tenant: tenant.name,
        receivedAt: req.receivedAt,
        visitorId: ids.visitorId,
        sessionId: ids.sessionId,
      },
    };
    const targets = this.targets(tenant, event.data.length);
    if (targets.length === 0) return this.notAdmitted(tenant, envelope);
    if (tenant.config.durability === 'durable') {
      return this.deps.wal.append(event.data, targets.length).then(
        (settle) => {
          this.handOver(targets, event, settle);
          return this.accepted(tenant, id, envelope, setCookies);
        },
        () => this.notAdmitted(tenant, envelope),
      );
    }
    this.handOver(targets, event);
    return this.accepted(tenant, id, envelope, setCookies);
  }

  private accepted(tenant: Tenant, id: string, envelope: Envelope, setCookies: string[]): Outcome {
    let tally = this.acceptedCount.get(tenant.name);
    if (tally === undefined) {
      tally = this.deps.metrics.accepted.get({ tenant: tenant.name });
      this.acceptedCount.set(tenant.name, tally);
    }
    tally.count += 1;
    return {
      status: 'accepted',
      id,
      envelope: envelope as unknown as Record<string, unknown>,
      setCookies,
    };
  }

  private notAdmitted(tenant: Tenant, envelope: Envelope): Outcome {
    this.deps.metrics.dropped.inc({ tenant: tenant.name, reason: 'spool_full' });
    return {
      status: 'dropped',
      reason: 'spool_full',
      envelope: envelope as unknown as Record<string, unknown>,
    };
  }

  private identify(
    tenant: Tenant,
    fields: EventFields,
    req: RequestContext,
    rawIp: string | null,
    ua: string | null,
  ): Ids {
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

  /** §3.9 admission: the tenant's sinks that can take the event; none: it is not accepted. */
  private targets(tenant: Tenant, bytes: number): Dispatcher[] {
    const all = this.deps.dispatchers();
    const targets: Dispatcher[] = [];
    for (const name of tenant.config.sinks) {
      const dispatcher = all.get(name);
      if (dispatcher === undefined) continue;
      if (dispatcher.canAccept(bytes)) targets.push(dispatcher);
      else this.deps.metrics.sinkDropped.inc({ sink: name, reason: 'spool_full' });
    }
    return targets;
  }

  /**
   * Step 8: each target gets its own QueuedEvent (a dispatcher clears `settle` once it has run
   * it); a copy that no longer fits is counted and settled.
   */
  private handOver(targets: readonly Dispatcher[], event: SinkEvent, settle?: () => void): void {
    const { data, meta } = event;
    for (const dispatcher of targets) {
      if (!dispatcher.push({ data, meta, settle })) {
        this.deps.metrics.sinkDropped.inc({ sink: dispatcher.name, reason: 'spool_full' });
        settle?.();
      }
    }
  }
}
