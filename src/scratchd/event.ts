/**
 * Input validation (spec §3.3) and the event envelope v1 (§3.4). Pixel parameters and JSON
 * objects are both turned into `EventFields`; rules that reject for JSON but repair for the
 * pixel are decided by `source`. Each repaired field is reported as a `fields_dropped` reason.
 */

export type Source = 'pixel' | 'e' | 'batch' | 'r';
export type DropReason =
  'prop' | 'url' | 'bad_id' | 'untrusted' | 'unknown_param' | 'unknown_field';

export const EVENT_TYPES: Record<string, string> = {
  pv: 'pageview',
  pageview: 'pageview',
  clk: 'click',
  click: 'click',
  srch: 'search',
  search: 'search',
  imp: 'impression',
  impression: 'impression',
  cst: 'custom',
  custom: 'custom',
};

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const USER_ID = /^[A-Za-z0-9_-]{1,128}$/;
const PROP_KEY = /^[a-z0-9_.]{1,64}$/;

const CONTROL = /[\u0000-\u001f\u007f]/;
const MAX_PROPS = 50;

/** What a client sent, before validation; values are unknown for JSON and strings for the pixel. */
export interface RawEvent {
  type?: unknown;
  name?: unknown;
  id?: unknown;
  ts?: unknown;
  url?: unknown;
  referrer?: unknown;
  title?: unknown;
  props?: unknown;
  visitor_id?: unknown;
  session_id?: unknown;
  user_id?: unknown;
  ip?: unknown;
  ua?: unknown;
}

export interface EventFields {
  type: string;
  name: string | null;
  /** Null when the server must make one. */
  id: string | null;
  clientTs: number | null;
  clockSkew: boolean;
  url: string | null;
  referrer: string | null;
  title: string | null;
  props: Record<string, string | number | boolean>;
  visitorId: string | null;
  sessionId: string | null;
  userId: string | null;
  ip: string | null;
  ua: string | null;
}

export interface ValidateOptions {
  source: Source;
  receivedAt: number;
  pastS: number;
  futureS: number;
}

export type Validated =
  { ok: true; fields: EventFields; drops: DropReason[] } | { ok: false; detail: string };

function fail(detail: string): Validated {
  return { ok: false, detail };
}

/** An absolute http(s) URL cut to 2048 characters, or null. */
export function cleanUrl(value: unknown): string | null | undefined {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') return undefined;
  if (!/^https?:\/\/[^\s/]/i.test(value) || !URL.canParse(value)) return undefined;
  return value.slice(0, 2048);
}

function cleanId(value: unknown, pattern: RegExp): string | null | undefined {
  if (value === undefined || value === null || value === '') return null;
  return typeof value === 'string' && pattern.test(value) ? value : undefined;
}

function cleanTs(value: unknown): number | null | undefined {
  if (value === undefined || value === null || value === '') return null;
  const n = typeof value === 'string' && /^-?\d{1,16}$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined;
}

function cleanProps(
  value: unknown,
  drops: DropReason[],
): Record<string, string | number | boolean> | undefined {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) return undefined;
  const out: Record<string, string | number | boolean> = {};
  let count = 0;
  for (const [key, entry] of Object.entries(value as Record<string, unknown>)) {
    const fits =
      PROP_KEY.test(key) &&
      ((typeof entry === 'string' && entry.length <= 1024) ||
        (typeof entry === 'number' && Number.isFinite(entry)) ||
        typeof entry === 'boolean');
    if (!fits || count >= MAX_PROPS) {
      drops.push('prop');
      continue;
    }
    out[key] = entry;
    count += 1;
  }
  return out;
}

function text(value: unknown, max: number): string | null {
  if (typeof value !== 'string' || value === '') return null;
  return value.slice(0, max);
}

/** Checks one event; `ok: false` means it is rejected as `invalid_event`. */
export function validateEvent(raw: RawEvent, options: ValidateOptions): Validated {
  const drops: DropReason[] = [];
  const lenient = options.source === 'pixel' || options.source === 'r';
  const typeText = raw.type === undefined || raw.type === '' ? 'pageview' : raw.type;
  const type = typeof typeText === 'string' ? EVENT_TYPES[typeText] : undefined;
  if (type === undefined) return fail(`type must be one of ${Object.keys(EVENT_TYPES).join(' ')}`);
  let name: string | null = null;
  if (type === 'custom') {
    if (
      typeof raw.name !== 'string' ||
      raw.name.length < 1 ||
      raw.name.length > 64 ||
      CONTROL.test(raw.name)
    ) {
      return fail('name must be 1-64 characters without control characters for a custom event');
    }
    name = raw.name;
  } else if (raw.name !== undefined && raw.name !== null && raw.name !== '') {
    if (typeof raw.name !== 'string' || raw.name.length > 64 || CONTROL.test(raw.name)) {
      return fail('name must be 1-64 characters without control characters');
    }
    name = raw.name;
  }
  let id = cleanId(raw.id, ID);
  if (id === undefined) {
    if (!lenient) return fail('id must match ^[A-Za-z0-9_-]{1,64}$');
    drops.push('bad_id');
    id = null;
  }
  let clientTs = cleanTs(raw.ts);
  let clockSkew = false;
  if (clientTs === undefined) {
    if (!lenient) return fail('ts must be an integer of epoch milliseconds');
    clientTs = null;
    clockSkew = true;
  } else if (clientTs !== null) {
    const low = options.receivedAt - options.pastS * 1000;
    const high = options.receivedAt + options.futureS * 1000;
    if (clientTs < low || clientTs > high) {
      clientTs = null;
      clockSkew = true;
    }
  }
  const url = cleanUrl(raw.url);
  const referrer = cleanUrl(raw.referrer);
  if (url === undefined) drops.push('url');
  if (referrer === undefined) drops.push('url');
  const props = cleanProps(raw.props, drops);
  if (props === undefined) return fail('props must be a flat object');
  const ids = [
    cleanId(raw.visitor_id, ID),
    cleanId(raw.session_id, ID),
    cleanId(raw.user_id, USER_ID),
  ];
  for (const value of ids) if (value === undefined) drops.push('bad_id');
  return {
    ok: true,
    drops,
    fields: {
      type,
      name,
      id,
      clientTs,
      clockSkew,
      url: url ?? null,
      referrer: referrer ?? null,
      title: text(raw.title, 256),
      props,
      visitorId: ids[0] ?? null,
      sessionId: ids[1] ?? null,
      userId: ids[2] ?? null,
      ip: typeof raw.ip === 'string' ? raw.ip : null,
      ua: text(raw.ua, 512),
    },
  };
}

export interface EventContext {
  ip: string | null;
  ua: string | null;
  lang: string | null;
  bot: boolean;
  dnt: boolean;
  clockSkew: boolean;
  trusted: boolean;
  source: Source;
  instance: string;
}

/** Envelope v1 (§3.4); the object's key order is the wire order. */
export interface Envelope {
  v: 1;
  id: string;
  tenant: string;
  type: string;
  name: string | null;
  received_at: number;
  client_ts: number | null;
  url: string | null;
  referrer: string | null;
  title: string | null;
  visitor_id: string | null;
  session_id: string | null;
  user_id: string | null;
  props: Record<string, string | number | boolean>;
  ctx: {
    ip: string | null;
    ua: string | null;
    lang: string | null;
    bot: boolean;
    dnt: boolean;
    clock_skew: boolean;
    trusted: boolean;
    source: Source;
    instance: string;
  };
}

export function buildEnvelope(
  tenant: string,
  id: string,
  receivedAt: number,
  fields: EventFields,
  ids: { visitorId: string | null; sessionId: string | null; userId: string | null },
  ctx: EventContext,
): Envelope {
  return {
    v: 1,
    id,
    tenant,
    type: fields.type,
    name: fields.name,
    received_at: receivedAt,
    client_ts: fields.clientTs,
    url: fields.url,
    referrer: fields.referrer,
    title: fields.title,
    visitor_id: ids.visitorId,
    session_id: ids.sessionId,
    user_id: ids.userId,
    props: fields.props,
    ctx: {
      ip: ctx.ip,
      ua: ctx.ua,
      lang: ctx.lang,
      bot: ctx.bot,
      dnt: ctx.dnt,
      clock_skew: ctx.clockSkew,
      trusted: ctx.trusted,
      source: ctx.source,
      instance: ctx.instance,
    },
  };
}

/** The first `Accept-Language` tag, at most 35 characters. */
export function firstLanguage(header: string | undefined): string | null {
  if (header === undefined) return null;
  const tag = (header.split(',')[0] ?? '').split(';')[0]?.trim() ?? '';
  if (tag === '' || tag === '*' || !/^[A-Za-z0-9-]+$/.test(tag)) return null;
  return tag.slice(0, 35);
}

/**
 * Parses a pixel query string: the first value of each parameter wins, `+` is a space, and a bad
 * percent-encoding or UTF-8 sequence makes the whole query invalid (undefined).
 */
export function parseQuery(query: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (let start = 0; start < query.length;) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    if (end > start) {
      let eq = query.indexOf('=', start);
      if (eq === -1 || eq > end) eq = end;
      const key = decodeComponent(query.slice(start, eq));
      const value = eq === end ? '' : decodeComponent(query.slice(eq + 1, end));
      if (key === undefined || value === undefined) return undefined;
      if (!out.has(key)) out.set(key, value);
    }
    start = end + 1;
  }
  return out;
}

/** One form-encoded component; undefined on a bad escape. Plain text is returned as is. */
function decodeComponent(raw: string): string | undefined {
  const plus = raw.includes('+');
  if (!plus && !raw.includes('%')) return raw;
  try {
    return decodeURIComponent(plus ? raw.replaceAll('+', ' ') : raw);
  } catch {
    return undefined;
  }
}

const PIXEL_FIELDS: Record<string, keyof RawEvent> = {
  e: 'type',
  n: 'name',
  u: 'url',
  r: 'referrer',
  t: 'title',
  id: 'id',
  ts: 'ts',
  vid: 'visitor_id',
  sid: 'session_id',
};
const PIXEL_IGNORED = new Set(['tid', 'cb', 'debug', 'nogif']);

/** Maps pixel parameters onto a RawEvent; unknown parameters go to props or are counted. */
export function pixelEvent(
  query: Map<string, string>,
  keepUnknown: boolean,
  drops: DropReason[],
): RawEvent {
  const raw: Record<string, unknown> = {};
  const props: Record<string, string> = {};
  for (const [key, value] of query) {
    const field = PIXEL_FIELDS[key];
    if (field !== undefined) raw[field] = value;
    else if (key.startsWith('p.')) props[key.slice(2)] = value;
    else if (PIXEL_IGNORED.has(key)) continue;
    else if (keepUnknown) props[key] = value;
    else drops.push('unknown_param');
  }
  raw.props = props;
  return raw;
}

export const JSON_FIELDS = new Set([
  'type',
  'name',
  'id',
  'ts',
  'url',
  'referrer',
  'title',
  'props',
]);
export const CLIENT_ID_FIELDS = new Set(['visitor_id', 'session_id']);
export const TRUSTED_FIELDS = new Set(['user_id', 'ip', 'ua']);
