/**
 * Visitor and session ids (§3.6): cookie mode, cookieless hash mode with a daily salt kept in
 * `salts.json`, and client mode. Cookies are parsed and built here too.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { IdentityConfig } from './config.js';
import { randomId22 } from './uuid.js';

const COOKIE_ID = /^[A-Za-z0-9_-]{22}$/;

export function buildCookie(
  name: string,
  value: string,
  maxAgeS: number,
  config: IdentityConfig,
): string {
  const domain = config.cookie_domain === undefined ? '' : `; Domain=${config.cookie_domain}`;
  const secure = config.secure ? '; Secure' : '';
  return `${name}=${value}; Max-Age=${maxAgeS}${domain}; Path=/${secure}; HttpOnly; SameSite=${config.same_site}`;
}

export interface CookieIds {
  visitorId: string;
  sessionId: string;
  setCookies: string[];
}

/**
 * The first value of each of two cookies in a Cookie header (`;`-separated `name=value` pairs,
 * name and value trimmed, parts without `=` skipped), found in one pass that builds no map: a
 * site's Cookie header carries many cookies besides these two.
 */
export function twoCookies(
  header: string | undefined,
  first: string,
  second: string,
): [string | undefined, string | undefined] {
  let a: string | undefined;
  let b: string | undefined;
  if (header === undefined) return [a, b];
  let eq = -1;
  for (let start = 0; start <= header.length && (a === undefined || b === undefined);) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    // The next '=' is looked up again only once the parts have passed it.
    if (eq < start) eq = header.indexOf('=', start);
    if (eq === -1) break;
    if (eq < end) {
      const key = header.slice(start, eq).trim();
      if (key === first || key === second) {
        const value = header.slice(eq + 1, end).trim();
        if (a === undefined && key === first) a = value;
        if (b === undefined && key === second) b = value;
      }
    }
    start = end + 1;
  }
  return [a, b];
}

/** Cookie mode: reuse valid ids, make missing ones, always re-send the session cookie. */
export function cookieIdentity(
  cookieHeader: string | undefined,
  config: IdentityConfig,
): CookieIds {
  const [visitorCookie, sessionCookie] = twoCookies(
    cookieHeader,
    config.visitor_cookie,
    config.session_cookie,
  );
  const setCookies: string[] = [];
  let visitorId = visitorCookie;
  if (visitorId === undefined || !COOKIE_ID.test(visitorId)) {
    visitorId = randomId22();
    setCookies.push(
      buildCookie(config.visitor_cookie, visitorId, config.visitor_days * 86_400, config),
    );
  }
  let sessionId = sessionCookie;
  if (sessionId === undefined || !COOKIE_ID.test(sessionId)) sessionId = randomId22();
  setCookies.push(
    buildCookie(config.session_cookie, sessionId, config.session_idle_min * 60, config),
  );
  return { visitorId, sessionId, setCookies };
}

interface SaltEntry {
  day: string;
  salt: string;
}
interface SaltFile {
  current: SaltEntry;
  previous: (SaltEntry & { expires_at: number }) | null;
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Daily salts: rotated at 00:00 UTC, yesterday's kept for `graceMs`, persisted 0600. */
export class Salts {
  private state: SaltFile;
  rotations = 0;

  constructor(
    private readonly path: string,
    private readonly graceMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.state = this.load() ?? this.fresh(null);
    this.rotate();
  }

  static inDir(dataDir: string, graceMs: number, now?: () => number): Salts {
    return new Salts(join(dataDir, 'salts.json'), graceMs, now);
  }

  private load(): SaltFile | undefined {
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as SaltFile;
      if (typeof parsed.current?.day === 'string' && typeof parsed.current.salt === 'string')
        return parsed;
    } catch {
      // Missing or unreadable: start with a new salt; ids of the day before cannot be rebuilt.
    }
    return undefined;
  }

  private fresh(previous: SaltFile['previous']): SaltFile {
    return {
      current: { day: utcDay(this.now()), salt: randomBytes(32).toString('base64') },
      previous,
    };
  }

  /** Rotates when the UTC day changed and expires the previous salt; persists on change. */
  rotate(): void {
    const now = this.now();
    let changed = false;
    if (this.state.current.day !== utcDay(now)) {
      this.state = this.fresh({ ...this.state.current, expires_at: now + this.graceMs });
      this.rotations += 1;
      changed = true;
    }
    if (this.state.previous !== null && this.state.previous.expires_at <= now) {
      this.state.previous = null;
      changed = true;
    }
    if (changed || this.dirty) this.persist();
  }

  private dirty = true;

  persist(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state), { mode: 0o600 });
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.path);
    this.dirty = false;
  }

  current(): Buffer {
    return Buffer.from(this.state.current.salt, 'base64');
  }

  previous(): Buffer | null {
    const prev = this.state.previous;
    if (prev === null || prev.expires_at <= this.now()) return null;
    return Buffer.from(prev.salt, 'base64');
  }
}

export function hashVisitor(salt: Buffer, tenant: string, ip: string, ua: string): string {
  return createHmac('sha256', salt)
    .update(`${tenant}\n${ip}\n${ua}`)
    .digest()
    .subarray(0, 16)
    .toString('base64url');
}

/** Hash mode's session table: LRU of visitor → {sid, lastSeen}, bounded. */
export class SessionCache {
  private readonly entries = new Map<string, { sid: string; lastSeen: number }>();

  constructor(
    private readonly capacity: number,
    private readonly idleMs: number,
  ) {}

  /** The open session of `visitor`, refreshed; undefined when missing or idle too long. */
  touch(visitor: string, now: number): string | undefined {
    const entry = this.entries.get(visitor);
    if (entry === undefined) return undefined;
    this.entries.delete(visitor);
    if (now - entry.lastSeen > this.idleMs) return undefined;
    entry.lastSeen = now;
    this.entries.set(visitor, entry);
    return entry.sid;
  }

  set(visitor: string, sid: string, now: number): void {
    this.entries.delete(visitor);
    this.entries.set(visitor, { sid, lastSeen: now });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  forget(visitor: string): void {
    this.entries.delete(visitor);
  }
}

/** Hash mode for one tenant: today's visitor id and a session that survives midnight. */
export function hashIdentity(
  salts: Salts,
  sessions: SessionCache,
  tenant: string,
  ip: string,
  ua: string,
  now: number,
): { visitorId: string; sessionId: string } {
  const visitorId = hashVisitor(salts.current(), tenant, ip, ua);
  let sessionId = sessions.touch(visitorId, now);
  if (sessionId === undefined) {
    const previous = salts.previous();
    if (previous !== null) {
      const yesterday = hashVisitor(previous, tenant, ip, ua);
      sessionId = sessions.touch(yesterday, now);
      if (sessionId !== undefined) sessions.forget(yesterday);
    }
  }
  sessionId ??= randomId22();
  sessions.set(visitorId, sessionId, now);
  return { visitorId, sessionId };
}
