/**
 * The public listener (§3.2): the `/track` pixel, `/e` and `/batch` JSON intake, the signed `/r`
 * redirect and CORS preflights. No handler ever waits on a network sink.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { Collector, Outcome, RequestContext } from './collector.js';
import type { LimitsConfig } from './config.js';
import {
  CLIENT_ID_FIELDS,
  cleanUrl,
  firstLanguage,
  JSON_FIELDS,
  parseQuery,
  pixelEvent,
  TRUSTED_FIELDS,
  validateEvent,
  type DropReason,
  type RawEvent,
  type Source,
} from './event.js';
import type { TrustedProxies } from './ip.js';
import type { Metrics, Tally } from './metrics.js';
import {
  checkRedirect,
  checkSecret,
  normalizeHost,
  type Tenant,
  type TenantTable,
} from './tenants.js';

const gunzipAsync = promisify(gunzip);

export const GIF = Buffer.from(
  '47494638396101000100f00000ffffff00000021f90401000000002c00000000010001000002024401003b',
  'hex',
);
/** The same 43 bytes as a latin1 string: Node sends a string body with its headers in one write. */
const GIF_LATIN1 = GIF.toString('latin1');

const PIXEL_HEADERS = {
  'Content-Type': 'image/gif',
  'Content-Length': String(GIF.length),
  'Cache-Control': 'no-cache, no-store, must-revalidate',
  Pragma: 'no-cache',
  Expires: '0',
};

const NOGIF = /(?:^|&)nogif=1(?:&|$)/;
const DEBUG = /(?:^|&)debug=1(?:&|$)/;

type Route = 'track' | 'r' | 'e' | 'batch' | 'preflight' | 'other';

const ALLOW: Record<string, string> = {
  '/track': 'GET, HEAD',
  '/r': 'GET',
  '/e': 'POST, OPTIONS',
  '/batch': 'POST, OPTIONS',
};

export interface PublicServerDeps {
  limits: LimitsConfig;
  tenants: () => TenantTable;
  collector: Collector;
  proxies: () => TrustedProxies;
  metrics: Metrics;
  /** True while shutting down: answers carry `Connection: close`. */
  draining: () => boolean;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q === -1 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** Whether `query` holds `name=1` as a whole parameter. */
function flagSet(query: string, name: string, pattern: RegExp): boolean {
  return query.includes(name) && pattern.test(query);
}

function rawTid(query: string): string | undefined {
  if (!query.includes('tid=')) return undefined;
  for (const part of query.split('&')) {
    if (part.startsWith('tid=')) {
      try {
        return decodeURIComponent(part.slice(4));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

export class PublicServer {
  readonly server: Server;
  /** By route, then by status code: the finish hook runs once per request. */
  private readonly requestCount = new Map<Route, Map<number, Tally>>();
  private readonly requestTime = new Map<Route, { observe(v: number): void }>();
  /** `received{route="track"}` by tenant name. */
  private readonly trackReceived = new Map<string, Tally>();

  constructor(private readonly deps: PublicServerDeps) {
    const limits = deps.limits;
    this.server = createServer(
      {
        maxHeaderSize: limits.header_kb * 1024,
        headersTimeout: limits.headers_timeout_ms,
        requestTimeout: limits.request_timeout_ms,
        keepAliveTimeout: limits.keep_alive_timeout_ms,
        // How often Node looks for sockets past headersTimeout/requestTimeout (default 30 s).
        connectionsCheckingInterval: Math.min(1000, limits.headers_timeout_ms),
      },
      (req, res) => this.handle(req, res),
    );
    this.server.maxConnections = limits.max_connections;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const { path, query } = splitUrl(req.url ?? '/');
    const route = this.routeOf(path, req.method);
    res.on('finish', () => this.countRequest(route, res.statusCode, started));
    if (this.deps.draining()) res.setHeader('Connection', 'close');
    try {
      this.dispatch(route, path, query, req, res)?.catch((err: unknown) =>
        this.fail(req, res, err),
      );
    } catch (err) {
      this.fail(req, res, err);
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    if (err instanceof HttpFailure) return this.sendError(req, res, err);
    if (!res.headersSent)
      this.sendJson(req, res, 500, { error: 'internal', detail: 'internal error' });
    else res.destroy();
  }

  private countRequest(route: Route, code: number, started: number): void {
    const metrics = this.deps.metrics;
    let byCode = this.requestCount.get(route);
    if (byCode === undefined) this.requestCount.set(route, (byCode = new Map<number, Tally>()));
    let count = byCode.get(code);
    if (count === undefined) {
      count = metrics.httpRequests.get({ route, code: String(code) });
      byCode.set(code, count);
    }
    count.count += 1;
    let time = this.requestTime.get(route);
    if (time === undefined) {
      time = metrics.httpDuration.labels({ route });
      this.requestTime.set(route, time);
    }
    time.observe((performance.now() - started) / 1000);
  }

  private routeOf(path: string, method: string | undefined): Route {
    if (path === '/track') return 'track';
    if (path === '/r') return 'r';
    if ((path === '/e' || path === '/batch') && method === 'OPTIONS') return 'preflight';
    if (path === '/e') return 'e';
    if (path === '/batch') return 'batch';
    return 'other';
  }

  /**
   * Answers the request; a promise when the answer waits on a body or a WAL fsync. The pixel of
   * a `queued` tenant is answered before this returns, with no promise on its path.
   */
  private dispatch(
    route: Route,
    path: string,
    query: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> | undefined {
    const allow = ALLOW[path];
    if (allow === undefined) throw new HttpFailure(404, 'not_found', `no route for ${path}`);
    const method = req.method ?? 'GET';
    if (!allow.split(', ').includes(method)) {
      res.setHeader('Allow', allow);
      throw new HttpFailure(405, 'method_not_allowed', `${method} is not allowed on ${path}`);
    }
    if (route === 'track') {
      if (method !== 'HEAD') return this.pixel(req, res, query);
      this.head(res);
      return undefined;
    }
    if (route === 'r') return this.redirect(req, res, query);
    if (route === 'preflight') {
      this.preflight(req, res, query);
      return undefined;
    }
    return this.json(req, res, query, route === 'e' ? 'e' : 'batch');
  }

  private head(res: ServerResponse): void {
    res.writeHead(200, PIXEL_HEADERS);
    res.end();
  }

  private requestContext(req: IncomingMessage, source: Source, trusted: boolean): RequestContext {
    const ua = req.headers['user-agent'];
    return {
      source,
      receivedAt: Date.now(),
      rawIp: this.deps
        .proxies()
        .clientIp(req.socket.remoteAddress, headerText(req.headers['x-forwarded-for'])),
      ua: ua === undefined || ua === '' ? null : ua.slice(0, 512),
      lang: firstLanguage(headerText(req.headers['accept-language'])),
      dnt: req.headers.dnt === '1',
      gpc: req.headers['sec-gpc'] === '1',
      cookieHeader: headerText(req.headers.cookie),
      trusted,
    };
  }

  private rejectCount(tenant: string, reason: string): void {
    this.deps.metrics.rejected.inc({ tenant, reason });
  }

  // ---- pixel -------------------------------------------------------------------------------

  private pixel(
    req: IncomingMessage,
    res: ServerResponse,
    query: string,
  ): Promise<void> | undefined {
    const url = req.url ?? '';
    const flags = {
      nogif: flagSet(query, 'nogif=', NOGIF),
      debug: flagSet(query, 'debug=', DEBUG),
    };
    const tenant = this.deps.tenants().resolve(rawTid(query), req.headers.host);
    const label = tenant?.name ?? '_unknown';
    let received = this.trackReceived.get(label);
    if (received === undefined) {
      received = this.deps.metrics.received.get({ tenant: label, route: 'track' });
      this.trackReceived.set(label, received);
    }
    received.count += 1;
    const outcome = this.pixelOutcome(req, url, query, tenant);
    if (outcome instanceof Promise)
      return outcome.then((settled) => this.answerPixel(res, settled, label, flags, tenant));
    this.answerPixel(res, outcome, label, flags, tenant);
    return undefined;
  }

  private answerPixel(
    res: ServerResponse,
    outcome: Outcome,
    label: string,
    flags: { nogif: boolean; debug: boolean },
    tenant: Tenant | undefined,
  ): void {
    if (outcome.status === 'rejected') this.rejectCount(label, outcome.reason);
    this.sendPixel(res, outcome, flags, tenant);
  }

  private pixelOutcome(
    req: IncomingMessage,
    url: string,
    query: string,
    tenant: Tenant | undefined,
  ): Outcome | Promise<Outcome> {
    const maxUrlBytes = this.deps.limits.pixel_url_kb * 1024;
    // A UTF-16 unit is at most 3 UTF-8 bytes, so most URLs need no byte count at all.
    if (url.length * 3 > maxUrlBytes && Buffer.byteLength(url) > maxUrlBytes)
      return { status: 'rejected', reason: 'too_large' };
    const params = parseQuery(query);
    if (params === undefined) return { status: 'rejected', reason: 'invalid_event' };
    if (tenant === undefined) return { status: 'rejected', reason: 'unknown_tenant' };
    const referer = headerText(req.headers.referer);
    if (
      tenant.config.check_referer_host &&
      referer !== undefined &&
      !refererAllowed(tenant, referer)
    ) {
      return { status: 'rejected', reason: 'origin' };
    }
    const drops: DropReason[] = [];
    const raw = pixelEvent(params, tenant.config.keep_unknown_params, drops);
    if (raw.url === undefined && referer !== undefined) raw.url = referer;
    if (tenant.config.identity.mode !== 'client') {
      if (raw.visitor_id !== undefined || raw.session_id !== undefined) drops.push('untrusted');
      delete raw.visitor_id;
      delete raw.session_id;
    }
    const ctx = this.requestContext(req, 'pixel', false);
    return this.single(tenant, raw, drops, ctx);
  }

  /** Validation, screening, one rate-limit token, acceptance: one event from a GET. */
  private single(
    tenant: Tenant,
    raw: RawEvent,
    drops: DropReason[],
    ctx: RequestContext,
  ): Outcome | Promise<Outcome> {
    const validated = validateEvent(raw, {
      source: ctx.source,
      receivedAt: ctx.receivedAt,
      pastS: tenant.config.client_ts_past_s,
      futureS: tenant.config.client_ts_future_s,
    });
    if (!validated.ok) return { status: 'rejected', reason: 'invalid_event' };
    this.deps.collector.countDrops(tenant.name, [...drops, ...validated.drops]);
    const screened = this.deps.collector.screen(tenant, validated.fields, ctx);
    if (screened !== undefined) return screened;
    if (tenant.bucket !== undefined && !tenant.bucket.take(1))
      return { status: 'rejected', reason: 'rate_limited' };
    return this.deps.collector.accept(tenant, validated.fields, ctx);
  }

  private sendPixel(
    res: ServerResponse,
    outcome: Outcome,
    flags: { nogif: boolean; debug: boolean },
    tenant: Tenant | undefined,
  ): void {
    const headers: Record<string, string | string[]> = { ...PIXEL_HEADERS };
    if (outcome.status === 'accepted') {
      if (outcome.setCookies.length > 0) headers['Set-Cookie'] = outcome.setCookies;
    } else {
      headers['X-Scratchd-Status'] = `${outcome.status}; reason=${outcome.reason}`;
    }
    if (flags.debug && tenant?.config.allow_debug === true) {
      const body = JSON.stringify({
        status: outcome.status,
        reason: outcome.status === 'accepted' ? null : outcome.reason,
        event: outcome.envelope ?? null,
      });
      delete headers.Pragma;
      delete headers.Expires;
      res.writeHead(200, {
        ...headers,
        'Content-Type': 'application/json',
        'Content-Length': String(Buffer.byteLength(body)),
        'Cache-Control': 'no-store',
      });
      res.end(body);
      return;
    }
    if (flags.nogif) {
      delete headers['Content-Type'];
      delete headers['Content-Length'];
      res.writeHead(204, headers);
      res.end();
      return;
    }
    res.writeHead(200, headers);
    res.end(GIF_LATIN1, 'latin1');
  }

  // ---- redirect ----------------------------------------------------------------------------

  private async redirect(req: IncomingMessage, res: ServerResponse, query: string): Promise<void> {
    const params = parseQuery(query);
    if (params === undefined)
      throw new HttpFailure(
        400,
        'bad_target',
        'the query string is not valid percent-encoded UTF-8',
      );
    const tenant = this.deps.tenants().resolve(params.get('tid'), req.headers.host);
    this.deps.metrics.received.inc({ tenant: tenant?.name ?? '_unknown', route: 'r' });
    if (tenant === undefined) {
      this.rejectCount('_unknown', 'unknown_tenant');
      throw new HttpFailure(404, 'unknown_tenant', 'no tenant for this tid or host');
    }
    const to = params.get('to') ?? '';
    if (!checkRedirect(tenant, to, params.get('sig') ?? '')) {
      throw new HttpFailure(400, 'bad_signature', 'sig does not match to for this tenant');
    }
    if (to.length > 2048 || cleanUrl(to) === undefined || cleanUrl(to) === null) {
      throw new HttpFailure(
        400,
        'bad_target',
        'to must be an absolute http(s) URL of at most 2048 characters',
      );
    }
    const drops: DropReason[] = [];
    const raw: RawEvent = {
      type: 'click',
      url: to,
      referrer: params.get('u') ?? headerText(req.headers.referer),
      id: params.get('id'),
    };
    const props: Record<string, string> = {};
    for (const [key, value] of params) if (key.startsWith('p.')) props[key.slice(2)] = value;
    raw.props = props;
    const outcome = await this.single(tenant, raw, drops, this.requestContext(req, 'r', false));
    if (outcome.status === 'rejected') this.rejectCount(tenant.name, outcome.reason);
    const headers: Record<string, string | string[]> = {
      Location: to,
      'Cache-Control': 'no-store',
    };
    if (outcome.status === 'accepted' && outcome.setCookies.length > 0)
      headers['Set-Cookie'] = outcome.setCookies;
    res.writeHead(302, headers);
    res.end();
  }

  // ---- JSON --------------------------------------------------------------------------------

  private corsHeaders(req: IncomingMessage, tenant: Tenant | undefined): Record<string, string> {
    const origin = headerText(req.headers.origin);
    if (origin === undefined || tenant === undefined || !tenant.origins.has(origin)) return {};
    return {
      'Access-Control-Allow-Origin': origin,
      'Access-Control-Allow-Credentials': 'true',
      Vary: 'Origin',
    };
  }

  private preflight(req: IncomingMessage, res: ServerResponse, query: string): void {
    const tenant = this.deps.tenants().resolve(rawTid(query), req.headers.host);
    const cors = this.corsHeaders(req, tenant);
    if (cors['Access-Control-Allow-Origin'] === undefined) {
      res.writeHead(403, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(
        JSON.stringify({
          error: 'origin_not_allowed',
          detail: 'this origin may not send events here',
        }),
      );
      return;
    }
    res.writeHead(204, {
      ...cors,
      'Access-Control-Allow-Methods': 'POST',
      'Access-Control-Allow-Headers': 'Content-Type, Authorization',
      'Access-Control-Max-Age': '600',
    });
    res.end();
  }

  private async json(
    req: IncomingMessage,
    res: ServerResponse,
    query: string,
    source: 'e' | 'batch',
  ): Promise<void> {
    const tenant = this.deps.tenants().resolve(rawTid(query), req.headers.host);
    const label = tenant?.name ?? '_unknown';
    const fail = (
      status: number,
      code: string,
      detail: string,
      extra: Record<string, unknown> = {},
    ): HttpFailure => {
      const reason =
        code === 'origin_not_allowed'
          ? 'origin'
          : code === 'bad_key'
            ? 'auth'
            : code === 'unsupported_media_type'
              ? 'invalid_json'
              : code;
      this.rejectCount(label, reason);
      return new HttpFailure(status, code, detail, extra);
    };
    if (tenant === undefined) throw fail(404, 'unknown_tenant', 'no tenant for this tid or host');
    const origin = headerText(req.headers.origin);
    if (origin !== undefined && !tenant.origins.has(origin))
      throw fail(403, 'origin_not_allowed', 'this origin may not send events here');
    res.setHeader('Cache-Control', 'no-store');
    for (const [k, v] of Object.entries(this.corsHeaders(req, tenant))) res.setHeader(k, v);
    let trusted = false;
    const auth = headerText(req.headers.authorization);
    if (auth !== undefined) {
      const match = /^Bearer (\S+)$/.exec(auth);
      if (match === null || !checkSecret(tenant, match[1] ?? ''))
        throw fail(401, 'bad_key', 'the bearer secret is not valid for this tenant');
      trusted = true;
    }
    const type =
      (headerText(req.headers['content-type']) ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    const ndjson = type === 'application/x-ndjson';
    if (!(type === 'application/json' || type === 'text/plain' || (ndjson && source === 'batch'))) {
      throw fail(
        415,
        'unsupported_media_type',
        `content type ${JSON.stringify(type)} is not accepted here`,
      );
    }
    const encoding = (headerText(req.headers['content-encoding']) ?? 'identity')
      .trim()
      .toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') {
      throw fail(
        415,
        'unsupported_media_type',
        `content encoding ${JSON.stringify(encoding)} is not accepted`,
      );
    }
    const limitBytes =
      (source === 'e' ? this.deps.limits.event_body_kb : this.deps.limits.batch_body_kb) * 1024;
    const body = await this.readBody(req, res, limitBytes, encoding === 'gzip', () =>
      fail(413, 'too_large', `the body is over ${limitBytes} bytes`),
    );
    const items = this.parseItems(body, source, ndjson, fail);
    this.deps.metrics.received.inc({ tenant: tenant.name, route: source }, items.length);
    await this.intake(req, res, tenant, items, source, trusted);
  }

  private parseItems(
    body: Buffer,
    source: 'e' | 'batch',
    ndjson: boolean,
    fail: (s: number, c: string, d: string) => HttpFailure,
  ): unknown[] {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      throw fail(400, 'invalid_json', 'the body is not valid UTF-8');
    }
    let items: unknown[];
    try {
      if (ndjson) {
        items = text
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as unknown);
      } else {
        const parsed = JSON.parse(text) as unknown;
        if (source === 'e') {
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
            throw fail(400, 'invalid_json', '/e takes one JSON object');
          items = [parsed];
        } else {
          if (!Array.isArray(parsed))
            throw fail(400, 'invalid_json', '/batch takes a JSON array or NDJSON');
          items = parsed;
        }
      }
    } catch (err) {
      if (err instanceof HttpFailure) throw err;
      throw fail(400, 'invalid_json', `the body is not valid JSON: ${(err as Error).message}`);
    }
    if (items.length === 0) throw fail(400, 'invalid_event', 'the batch holds no events');
    if (items.length > this.deps.limits.batch_events) {
      throw fail(
        413,
        'too_large',
        `the batch holds ${items.length} events, over ${this.deps.limits.batch_events}`,
      );
    }
    return items;
  }

  private readBody(
    req: IncomingMessage,
    res: ServerResponse,
    limit: number,
    gzipped: boolean,
    tooLarge: () => HttpFailure,
  ): Promise<Buffer> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    const stop = (): HttpFailure => {
      res.setHeader('Connection', 'close');
      req.pause();
      return tooLarge();
    };
    if (!gzipped && declared > limit) return Promise.reject(stop());
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on('data', (chunk: Buffer) => {
        if (over) return;
        size += chunk.length;
        if (size > limit) {
          over = true;
          reject(stop());
          return;
        }
        chunks.push(chunk);
      });
      req.on('error', reject);
      req.on('end', () => {
        if (over) return;
        const raw = Buffer.concat(chunks);
        if (!gzipped) return resolve(raw);
        gunzipAsync(raw, { maxOutputLength: limit }).then(resolve, (err: NodeJS.ErrnoException) => {
          if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) reject(stop());
          else reject(new HttpFailure(400, 'invalid_json', 'the gzip body cannot be inflated'));
        });
      });
    });
  }

  /** Per-event validation, one rate-limit take for the whole request, acceptance, the answer. */
  private async intake(
    req: IncomingMessage,
    res: ServerResponse,
    tenant: Tenant,
    items: unknown[],
    source: 'e' | 'batch',
    trusted: boolean,
  ): Promise<void> {
    const ctx = this.requestContext(req, source, trusted);
    const rejected: { i: number; reason: string; detail: string }[] = [];
    const valid: { i: number; fields: ReturnType<typeof validateEvent> & { ok: true } }[] = [];
    items.forEach((item, i) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        rejected.push({ i, reason: 'invalid_event', detail: 'an event must be a JSON object' });
        return;
      }
      const drops: DropReason[] = [];
      const raw = this.jsonEvent(item as Record<string, unknown>, tenant, trusted, drops);
      const validated = validateEvent(raw, {
        source,
        receivedAt: ctx.receivedAt,
        pastS: tenant.config.client_ts_past_s,
        futureS: tenant.config.client_ts_future_s,
      });
      if (!validated.ok) {
        rejected.push({ i, reason: 'invalid_event', detail: validated.detail });
        return;
      }
      this.deps.collector.countDrops(tenant.name, [...drops, ...validated.drops]);
      valid.push({ i, fields: validated });
    });
    for (const r of rejected) this.rejectCount(tenant.name, r.reason);
    if (valid.length === 0) {
      throw new HttpFailure(400, 'invalid_event', 'every event is invalid', { rejected });
    }
    let dropped = 0;
    const kept = valid.filter(({ fields }) => {
      const screened = this.deps.collector.screen(tenant, fields.fields, ctx);
      if (screened !== undefined) dropped += 1;
      return screened === undefined;
    });
    if (kept.length > 0 && tenant.bucket !== undefined && !tenant.bucket.take(kept.length)) {
      this.deps.metrics.rejected.inc({ tenant: tenant.name, reason: 'rate_limited' }, kept.length);
      res.setHeader('Retry-After', '1');
      throw new HttpFailure(429, 'rate_limited', `tenant ${tenant.name} is over its rate limit`);
    }
    const ids: string[] = [];
    let overloaded = 0;
    for (const { i, fields } of kept) {
      let outcome = this.deps.collector.accept(tenant, fields.fields, ctx);
      if (outcome instanceof Promise) outcome = await outcome;
      if (outcome.status === 'accepted') ids.push(outcome.id);
      else {
        overloaded += 1;
        rejected.push({
          i,
          reason: 'overloaded',
          detail: 'no sink can hold the event now; retry later',
        });
      }
    }
    if (overloaded > 0 && ids.length === 0) {
      res.setHeader('Retry-After', '5');
      throw new HttpFailure(503, 'overloaded', 'no sink can hold events now; retry later');
    }
    if (ctx.cookies !== undefined && ctx.cookies.setCookies.length > 0)
      res.setHeader('Set-Cookie', ctx.cookies.setCookies);
    rejected.sort((a, b) => a.i - b.i);
    this.sendJson(req, res, 202, { accepted: ids.length, dropped, ids, rejected });
  }

  private jsonEvent(
    item: Record<string, unknown>,
    tenant: Tenant,
    trusted: boolean,
    drops: DropReason[],
  ): RawEvent {
    const raw: Record<string, unknown> = {};
    const clientIds = tenant.config.identity.mode === 'client';
    for (const [key, value] of Object.entries(item)) {
      if (JSON_FIELDS.has(key)) raw[key] = value;
      else if (CLIENT_ID_FIELDS.has(key)) {
        if (clientIds || trusted) raw[key] = value;
        else drops.push('untrusted');
      } else if (TRUSTED_FIELDS.has(key)) {
        if (trusted) raw[key] = value;
        else drops.push('untrusted');
      } else drops.push('unknown_field');
    }
    if (raw.ip !== undefined && typeof raw.ip !== 'string') delete raw.ip;
    return raw;
  }

  private sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    if (!res.hasHeader('Cache-Control')) res.setHeader('Cache-Control', 'no-store');
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(text)),
    });
    res.end(text);
    void req;
  }

  private sendError(req: IncomingMessage, res: ServerResponse, err: HttpFailure): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.sendJson(req, res, err.status, { error: err.code, detail: err.detail, ...err.extra });
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function refererAllowed(tenant: Tenant, referer: string): boolean {
  try {
    return tenant.hosts.has(normalizeHost(new URL(referer).host));
  } catch {
    return false;
  }
}
