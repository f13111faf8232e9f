// Identity, privacy and rate limits (spec §3.6, §3.7) under injected clocks: pure logic.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  cookieIdentity,
  hashIdentity,
  Salts,
  SessionCache,
  twoCookies,
} from '../../src/scratchd/identity.js';
import { BotMatcher, TrustedProxies, truncateIp } from '../../src/scratchd/ip.js';
import { TokenBucket } from '../../src/scratchd/rate-limit.js';
import { tempDir } from './helpers/harness.js';

const identity = {
  mode: 'cookie' as const,
  cookie_domain: 'skroutz.gr',
  visitor_cookie: '_scr_v',
  visitor_days: 365,
  session_cookie: '_scr_s',
  session_idle_min: 30,
  secure: true,
  same_site: 'Lax' as const,
  session_cache_entries: 3,
};

t.test('cookie identity sets, keeps and re-sends', async (t) => {
  const fresh = cookieIdentity(undefined, identity);
  t.match(fresh.visitorId, /^[A-Za-z0-9_-]{22}$/);
  t.same(fresh.setCookies, [
    `_scr_v=${fresh.visitorId}; Max-Age=31536000; Domain=skroutz.gr; Path=/; Secure; HttpOnly; SameSite=Lax`,
    `_scr_s=${fresh.sessionId}; Max-Age=1800; Domain=skroutz.gr; Path=/; Secure; HttpOnly; SameSite=Lax`,
  ]);
  const again = cookieIdentity(
    `other=1; _scr_v=${fresh.visitorId}; _scr_s=${fresh.sessionId}`,
    identity,
  );
  t.equal(again.visitorId, fresh.visitorId);
  t.equal(again.sessionId, fresh.sessionId);
  t.equal(again.setCookies.length, 1);
  const malformed = cookieIdentity('_scr_v=short', identity);
  t.not(malformed.visitorId, 'short');
});

t.test('the two identity cookies are found among others', async (t) => {
  const cases: [string, string | undefined, [string | undefined, string | undefined]][] = [
    ['no header', undefined, [undefined, undefined]],
    ['empty header', '', [undefined, undefined]],
    ['both, other cookies around', 'a=1; _scr_v=V; b=2; _scr_s=S; c=3', ['V', 'S']],
    ['first value wins', '_scr_s=S1; _scr_v=V1; _scr_v=V2; _scr_s=S2', ['V1', 'S1']],
    ['names and values trimmed', '  _scr_v =  V ;_scr_s=S  ', ['V', 'S']],
    ['parts without = skipped', 'flag; _scr_v=V; other; _scr_s=S', ['V', 'S']],
    ['a value holding =', '_scr_v=a=b; _scr_s=', ['a=b', '']],
    ['only a longer name', '_scr_vv=X; x_scr_s=Y', [undefined, undefined]],
    ['trailing separators', '_scr_v=V;;', ['V', undefined]],
    ['no = anywhere', 'a; b; c', [undefined, undefined]],
  ];
  for (const [label, header, want] of cases) {
    t.same(twoCookies(header, '_scr_v', '_scr_s'), want, label);
  }
  t.same(twoCookies('x=1; same=V', 'same', 'same'), ['V', 'V'], 'one name asked twice');
});

t.test('A10: hash identity across midnight, idle gaps and restarts', async (t) => {
  const dir = tempDir(t);
  let now = Date.parse('2026-06-01T23:50:00Z');
  const clock = () => now;
  const salts = Salts.inDir(dir, 30 * 60_000, clock);
  const sessions = new SessionCache(100, 30 * 60_000);
  const a = hashIdentity(salts, sessions, 'gr', '203.0.113.9', 'UA', now);
  const b = hashIdentity(salts, sessions, 'gr', '203.0.113.9', 'UA', now + 1000);
  t.equal(a.visitorId, b.visitorId, 'same IP and UA, same visitor');
  t.equal(a.sessionId, b.sessionId);
  t.not(hashIdentity(salts, sessions, 'gr', '203.0.113.10', 'UA', now).visitorId, a.visitorId);
  t.equal(statSync(join(dir, 'salts.json')).mode & 0o777, 0o600);
  const restarted = Salts.inDir(dir, 30 * 60_000, clock);
  t.equal(
    hashIdentity(restarted, new SessionCache(100, 30 * 60_000), 'gr', '203.0.113.9', 'UA', now)
      .visitorId,
    a.visitorId,
    'same-day restart keeps the id',
  );
  now = Date.parse('2026-06-02T00:05:00Z');
  salts.rotate();
  t.equal(salts.rotations, 1);
  const c = hashIdentity(salts, sessions, 'gr', '203.0.113.9', 'UA', now);
  t.not(c.visitorId, a.visitorId, 'a new day, a new visitor');
  t.equal(c.sessionId, a.sessionId, 'the session continues across midnight');
  const file = JSON.parse(readFileSync(join(dir, 'salts.json'), 'utf8')) as { previous: unknown };
  t.ok(file.previous, 'yesterday salt kept for the grace window');
  now += 31 * 60_000;
  salts.rotate();
  t.equal(salts.previous(), null, 'the old salt is erased after the window');
  const d = hashIdentity(salts, sessions, 'gr', '203.0.113.9', 'UA', now);
  t.not(d.sessionId, c.sessionId, 'an idle gap starts a new session');
});

t.test('IP truncation, forwarded-for and bots', async (t) => {
  const cases: [string, string | null][] = [
    ['203.0.113.195', '203.0.113.0'],
    ['2001:db8:85a3:8d3:1319:8a2e:370:7348', '2001:db8:85a3::'],
    ['::1', '0:0:0::'],
    ['nonsense', null],
  ];
  for (const [ip, out] of cases) t.equal(truncateIp(ip), out, ip);
  const proxies = new TrustedProxies(['127.0.0.1/32', '10.0.0.0/8']);
  t.equal(proxies.clientIp('127.0.0.1', '198.51.100.1, 10.1.1.1'), '198.51.100.1');
  t.equal(proxies.clientIp('::ffff:127.0.0.1', '198.51.100.2'), '198.51.100.2', 'IPv4-mapped peer');
  t.equal(
    proxies.clientIp('192.0.2.1', '198.51.100.1'),
    '192.0.2.1',
    'untrusted peer: XFF ignored',
  );
  t.equal(
    proxies.clientIp('127.0.0.1', '203.0.113.1, 198.51.100.1'),
    '198.51.100.1',
    'first untrusted from the right',
  );
  const bots = new BotMatcher(['^internal-monitor']);
  t.ok(bots.isBot('Mozilla/5.0 (compatible; Googlebot/2.1)'));
  t.ok(bots.isBot('curl/8.0'));
  t.ok(bots.isBot(''), 'empty UA');
  t.ok(bots.isBot('Internal-Monitor 1.0'), 'extra pattern, case-insensitive');
  t.notOk(bots.isBot('Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0'));
});

t.test('token bucket: burst, refill, all or nothing', async (t) => {
  let now = 0;
  const bucket = new TokenBucket(10, 5, () => now);
  t.ok(bucket.take(5));
  t.notOk(bucket.take(1));
  now += 100;
  t.ok(bucket.take(1), 'one token after 100 ms at 10/s');
  t.notOk(bucket.take(1));
  now += 1000;
  t.notOk(bucket.take(6), 'never more than the burst');
  t.ok(bucket.take(5));
});

t.test('session cache is bounded LRU', async (t) => {
  const cache = new SessionCache(2, 1000);
  cache.set('a', 's1', 0);
  cache.set('b', 's2', 0);
  t.equal(cache.touch('a', 10), 's1');
  cache.set('c', 's3', 10);
  t.equal(cache.touch('b', 10), undefined, 'least recently used went first');
  t.equal(cache.touch('a', 2000), undefined, 'idle too long');
});
