// The public listener end to end against the built executable: spec §7 A1, A2, A5-A9, A11, A12.
import { createHash, createHmac } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { eventually } from '../helpers/net.js';
import { archived, boot, httpRequest, metric, type Booted } from './helpers/harness.js';

const GIF_HEX =
  '47494638396101000100f00000ffffff00000021f90401000000002c00000000010001000002024401003b';
const SECRET = 's3cret-token';
const REDIRECT_KEY = 'redirect-key-1';
const UA = 'Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0';

const config = {
  tenants: {
    gr: {
      hosts: ['www.skroutz.gr'],
      allowed_origins: ['https://www.skroutz.gr'],
      check_referer_host: true,
      secrets_sha256: [createHash('sha256').update(SECRET).digest('hex')],
      redirect_key_envs: ['SCR_TEST_REDIRECT_KEY'],
      sinks: ['archive'],
    },
    uk: {
      hosts: ['www.scrooge.co.uk'],
      privacy: { on_opt_out: 'drop' },
      bots: 'drop',
      sinks: ['archive'],
    },
    rl: {
      hosts: ['rl.example'],
      rate_limit: { events_per_s: 0.001, burst: 2 },
      redirect_key_envs: ['SCR_TEST_REDIRECT_KEY'],
      sinks: ['archive'],
    },
    any: { hosts: ['*'], sinks: ['archive'] },
  },
  sinks: { archive: { type: 'file', linger_ms: 5 } },
};

let app: Booted;
t.before(async () => {
  app = await boot(t, config, { env: { SCR_TEST_REDIRECT_KEY: REDIRECT_KEY } });
});

const events = (): Record<string, unknown>[] => archived(join(app.dataDir, 'events'));
async function stored(id: string): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await eventually(() => (found = events().find((e) => e.id === id)) !== undefined, 10_000, 50);
  return found as Record<string, unknown>;
}
const pixel = (query: string, headers: Record<string, string> = {}, method = 'GET') =>
  httpRequest(`${app.base}/track?${query}`, {
    method,
    headers: { host: 'www.skroutz.gr', 'user-agent': UA, ...headers },
  });
const postJson = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  httpRequest(`${app.base}${path}`, {
    method: 'POST',
    body,
    headers: {
      host: 'www.skroutz.gr',
      'content-type': 'application/json',
      'user-agent': UA,
      ...headers,
    },
  });
const json = (body: Buffer) => JSON.parse(body.toString('utf8')) as Record<string, unknown>;

t.test(
  'A1: the pixel is the exact GIF with its headers; HEAD records nothing; nogif gives 204',
  async (t) => {
    const res = await pixel('e=pv&id=a1-get&u=https%3A%2F%2Fwww.skroutz.gr%2Fs%2F1');
    t.equal(res.status, 200);
    t.equal(res.body.toString('hex'), GIF_HEX);
    t.equal(res.headers['content-type'], 'image/gif');
    t.equal(res.headers['content-length'], '43');
    t.equal(res.headers['cache-control'], 'no-cache, no-store, must-revalidate');
    t.equal(res.headers.pragma, 'no-cache');
    t.equal(res.headers.expires, '0');
    t.notOk(res.headers['x-scratchd-status'], 'no status header when accepted');
    const event = await stored('a1-get');
    t.equal(event.type, 'pageview');
    t.equal(event.tenant, 'gr');
    t.equal(event.url, 'https://www.skroutz.gr/s/1');
    const head = await pixel('id=a1-head', {}, 'HEAD');
    t.equal(head.status, 200);
    t.equal(head.body.length, 0);
    t.equal(head.headers['content-length'], '43');
    const nogif = await pixel('id=a1-nogif&nogif=1');
    t.equal(nogif.status, 204);
    t.equal(nogif.body.length, 0);
    t.equal(nogif.headers['cache-control'], 'no-cache, no-store, must-revalidate');
    await stored('a1-nogif');
    t.notOk(
      events().some((e) => e.id === 'a1-head'),
      'HEAD stored nothing',
    );
  },
);

t.test('A2: bad pixels still get the GIF, with the status header and the counter', async (t) => {
  const cases: {
    name: string;
    query: string;
    headers: Record<string, string>;
    status: string;
    tenant: string;
    reason: string;
  }[] = [
    {
      name: 'malformed query',
      query: 'e=pv&u=%E0%A4%A',
      headers: {},
      status: 'rejected; reason=invalid_event',
      tenant: 'gr',
      reason: 'invalid_event',
    },
    {
      name: 'unknown tenant',
      query: 'tid=nosuch',
      headers: {},
      status: 'rejected; reason=unknown_tenant',
      tenant: '_unknown',
      reason: 'unknown_tenant',
    },
    {
      name: '9 KiB URL',
      query: `p.x=${'a'.repeat(9 * 1024)}`,
      headers: {},
      status: 'rejected; reason=too_large',
      tenant: 'gr',
      reason: 'too_large',
    },
    {
      name: 'foreign Referer',
      query: 'e=pv',
      headers: { referer: 'https://evil.example/page' },
      status: 'rejected; reason=origin',
      tenant: 'gr',
      reason: 'origin',
    },
  ];
  for (const c of cases) {
    const before = await metric(app.admin, 'scratchd_events_rejected_total', {
      tenant: c.tenant,
      reason: c.reason,
    });
    const res = await pixel(c.query, c.headers);
    t.equal(res.status, 200, c.name);
    t.equal(res.body.toString('hex'), GIF_HEX, `${c.name}: GIF`);
    t.equal(res.headers['x-scratchd-status'], c.status, `${c.name}: status header`);
    t.equal(
      await metric(app.admin, 'scratchd_events_rejected_total', {
        tenant: c.tenant,
        reason: c.reason,
      }),
      before + 1,
      `${c.name}: counted`,
    );
  }
  const statuses: unknown[] = [];
  for (let i = 0; i < 3; i += 1)
    statuses.push((await pixel(`id=rl-${i}`, { host: 'rl.example' })).headers['x-scratchd-status']);
  t.same(
    statuses,
    [undefined, undefined, 'rejected; reason=rate_limited'],
    'third hit over the burst of 2',
  );
  t.ok(
    (await metric(app.admin, 'scratchd_events_rejected_total', {
      tenant: 'rl',
      reason: 'rate_limited',
    })) >= 1,
  );
  const same = await pixel('id=a2-same&e=pv', { referer: 'https://www.skroutz.gr/x' });
  t.notOk(same.headers['x-scratchd-status'], 'own Referer passes');
});

/**
 * The start of one HTTP chunk: its size line and data, without the CRLF after the data, so the
 * last byte written is the one that takes the body over the limit.
 */
const chunkStart = (data: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data]);

/**
 * A POST /batch over a raw socket that writes its head and `body`, then waits for the server to
 * answer and close, never writing more. Resolves the response head and body as text.
 */
async function overLimitExchange(
  framing: string,
  body: Buffer,
): Promise<{ head: string; body: string }> {
  const url = new URL(app.base);
  const socket = connect(Number(url.port), url.hostname);
  socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  // A reset after the answer (unread bytes at the server's close) still ends the exchange.
  const closed = new Promise<void>((resolve, reject) => {
    socket.on('close', () => resolve());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') reject(err);
    });
  });
  const head = ['POST /batch HTTP/1.1', 'Host: www.skroutz.gr', 'Content-Type: application/json'];
  socket.write(`${head.join('\r\n')}\r\n${framing}\r\n`);
  socket.write(body);
  await closed;
  const text = Buffer.concat(chunks).toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  return split === -1
    ? { head: text, body: '' }
    : { head: text.slice(0, split + 2), body: text.slice(split + 4) };
}

t.test('A5: /e and /batch answers, NDJSON, gzip, limits and media types', async (t) => {
  const one = await postJson(
    '/e',
    JSON.stringify({ type: 'search', id: 'a5-e', props: { q: 'iphone', pos: 3 } }),
  );
  t.equal(one.status, 202);
  t.same(json(one.body), { accepted: 1, dropped: 0, ids: ['a5-e'], rejected: [] });
  t.equal(one.headers['content-type'], 'application/json');
  t.equal(one.headers['cache-control'], 'no-store');
  const e = await stored('a5-e');
  t.same(e.props, { q: 'iphone', pos: 3 });
  t.equal((e.ctx as Record<string, unknown>).source, 'e');

  const batch = [
    { type: 'pv', id: 'a5-b0' },
    { type: 'nonsense', id: 'a5-b1' },
    { type: 'click', id: 'a5-b2', url: 'https://shop.example/p' },
    { type: 'custom', id: 'a5-b3' },
    { type: 'impression', id: 'a5-b4' },
  ];
  const bodies: { name: string; body: Buffer; headers: Record<string, string> }[] = [
    { name: 'JSON array', body: Buffer.from(JSON.stringify(batch)), headers: {} },
    {
      name: 'NDJSON',
      body: Buffer.from(`${batch.map((b) => JSON.stringify(b)).join('\n')}\n\n`),
      headers: { 'content-type': 'application/x-ndjson' },
    },
    {
      name: 'gzip',
      body: gzipSync(JSON.stringify(batch)),
      headers: { 'content-encoding': 'gzip' },
    },
    {
      name: 'text/plain (sendBeacon)',
      body: Buffer.from(JSON.stringify(batch)),
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
    },
  ];
  for (const b of bodies) {
    const res = await postJson('/batch', b.body, b.headers);
    t.equal(res.status, 202, b.name);
    const answer = json(res.body);
    t.equal(answer.accepted, 3, `${b.name}: 3 accepted`);
    t.same(answer.ids, ['a5-b0', 'a5-b2', 'a5-b4'], `${b.name}: ids in order`);
    t.same(
      (answer.rejected as { i: number }[]).map((r) => r.i),
      [1, 3],
      `${b.name}: rejected indexes`,
    );
  }
  const tooMany = await postJson(
    '/batch',
    JSON.stringify(Array.from({ length: 501 }, () => ({ type: 'pv' }))),
  );
  t.equal(tooMany.status, 413);
  t.equal(json(tooMany.body).error, 'too_large');
  // The server stops reading at the limit and closes, so a client still writing its body races
  // the close (EPIPE or a reset). These two exchanges write nothing past the point where the
  // server answers, which keeps them deterministic.
  const declared = await overLimitExchange(
    `Content-Length: ${2 * 1024 * 1024}\r\n`,
    Buffer.alloc(0),
  );
  t.match(declared.head, /^HTTP\/1\.1 413 /, 'a declared 2 MiB body is refused before it is sent');
  t.match(declared.head, /\r\nconnection: close\r\n/i);
  t.match(declared.body, /"error":"too_large"/);
  const streamed = await overLimitExchange(
    'Transfer-Encoding: chunked\r\n',
    chunkStart(Buffer.alloc(1024 * 1024 + 1, 0x20)),
  );
  t.match(streamed.head, /^HTTP\/1\.1 413 /, 'a chunked body is refused once it passes 1 MiB');
  t.match(streamed.head, /\r\nconnection: close\r\n/i);
  const bomb = await postJson('/e', gzipSync(Buffer.alloc(200 * 1024, 0x20)), {
    'content-encoding': 'gzip',
  });
  t.equal(bomb.status, 413, 'inflated size counts');
  const cases: {
    name: string;
    body: string;
    headers: Record<string, string>;
    status: number;
    error: string;
  }[] = [
    {
      name: 'text/html',
      body: '{}',
      headers: { 'content-type': 'text/html' },
      status: 415,
      error: 'unsupported_media_type',
    },
    {
      name: 'br encoding',
      body: '{}',
      headers: { 'content-encoding': 'br' },
      status: 415,
      error: 'unsupported_media_type',
    },
    {
      name: 'NDJSON on /e',
      body: '{}',
      headers: { 'content-type': 'application/x-ndjson' },
      status: 415,
      error: 'unsupported_media_type',
    },
    { name: 'invalid JSON', body: '{"type":', headers: {}, status: 400, error: 'invalid_json' },
    { name: 'array on /e', body: '[]', headers: {}, status: 400, error: 'invalid_json' },
    {
      name: 'invalid event',
      body: '{"type":"bogus"}',
      headers: {},
      status: 400,
      error: 'invalid_event',
    },
    {
      name: 'bad client id',
      body: '{"id":"has space"}',
      headers: {},
      status: 400,
      error: 'invalid_event',
    },
  ];
  for (const c of cases) {
    const res = await postJson('/e', c.body, c.headers);
    t.equal(res.status, c.status, c.name);
    t.equal(json(res.body).error, c.error, c.name);
  }
  const empty = await postJson('/batch', '[]');
  t.equal(empty.status, 400);
  t.equal(json(empty.body).error, 'invalid_event');
  const wrongMethod = await httpRequest(`${app.base}/e`, { headers: { host: 'www.skroutz.gr' } });
  t.equal(wrongMethod.status, 405);
  t.equal(wrongMethod.headers.allow, 'POST, OPTIONS');
  const unknown = await httpRequest(`${app.base}/nope`);
  t.equal(unknown.status, 404);
  t.same(json(unknown.body).error, 'not_found');
  for (const path of ['/track/create', '/track/connect', '/track/actions/create']) {
    t.equal((await httpRequest(`${app.base}${path}`)).status, 404, path);
  }
  const unknownTenant = await postJson('/e?tid=nosuch', '{}');
  t.equal(unknownTenant.status, 404);
  t.equal(json(unknownTenant.body).error, 'unknown_tenant');
});

t.test('A6: CORS preflight and origin checks', async (t) => {
  const ok = await httpRequest(`${app.base}/e`, {
    method: 'OPTIONS',
    headers: { host: 'www.skroutz.gr', origin: 'https://www.skroutz.gr' },
  });
  t.equal(ok.status, 204);
  t.equal(ok.headers['access-control-allow-origin'], 'https://www.skroutz.gr');
  t.equal(ok.headers['access-control-allow-methods'], 'POST');
  t.equal(ok.headers['access-control-allow-headers'], 'Content-Type, Authorization');
  t.equal(ok.headers['access-control-allow-credentials'], 'true');
  t.equal(ok.headers['access-control-max-age'], '600');
  t.equal(ok.headers.vary, 'Origin');
  const bad = await httpRequest(`${app.base}/batch`, {
    method: 'OPTIONS',
    headers: { host: 'www.skroutz.gr', origin: 'https://evil.example' },
  });
  t.equal(bad.status, 403);
  t.notOk(bad.headers['access-control-allow-origin']);
  const post = await postJson('/e', '{}', { origin: 'https://evil.example' });
  t.equal(post.status, 403);
  t.equal(json(post.body).error, 'origin_not_allowed');
  const allowed = await postJson('/e', '{"id":"a6-ok"}', { origin: 'https://www.skroutz.gr' });
  t.equal(allowed.status, 202);
  t.equal(allowed.headers['access-control-allow-origin'], 'https://www.skroutz.gr');
  t.equal(allowed.headers['access-control-allow-credentials'], 'true');
});

t.test('A7: a valid bearer lets trusted fields through; a wrong one gets 401', async (t) => {
  const body = JSON.stringify({
    id: 'a7-trusted',
    user_id: 'user-42',
    ip: '198.51.100.77',
    ua: 'RailsApp/1.0 Mozilla',
  });
  const res = await postJson('/e', body, { authorization: `Bearer ${SECRET}` });
  t.equal(res.status, 202);
  const e = await stored('a7-trusted');
  t.equal(e.user_id, 'user-42');
  const ctx = e.ctx as Record<string, unknown>;
  t.equal(ctx.trusted, true);
  t.equal(ctx.ip, '198.51.100.0', 'trusted IP, truncated');
  t.equal(ctx.ua, 'RailsApp/1.0 Mozilla');
  const wrong = await postJson('/e', body, { authorization: 'Bearer nope' });
  t.equal(wrong.status, 401);
  t.equal(json(wrong.body).error, 'bad_key');
  const before = await metric(app.admin, 'scratchd_fields_dropped_total', {
    tenant: 'gr',
    reason: 'untrusted',
  });
  const plain = await postJson(
    '/e',
    JSON.stringify({ id: 'a7-plain', user_id: 'user-42', ip: '198.51.100.77' }),
  );
  t.equal(plain.status, 202);
  const p = await stored('a7-plain');
  t.equal(p.user_id, null);
  t.equal((p.ctx as Record<string, unknown>).trusted, false);
  t.equal((p.ctx as Record<string, unknown>).ip, '127.0.0.0');
  t.equal(
    await metric(app.admin, 'scratchd_fields_dropped_total', { tenant: 'gr', reason: 'untrusted' }),
    before + 2,
  );
});

t.test('A8: signed click-out redirects', async (t) => {
  const to = 'https://shop.example/product?id=9&ref=skroutz';
  const sig = (tenant: string, target: string) =>
    Promise.resolve(
      createHmac('sha256', REDIRECT_KEY).update(`${tenant}\n${target}`).digest('hex'),
    );
  const link = async (tenant: string, target: string, signature: string, extra = '') =>
    httpRequest(
      `${app.base}/r?tid=${tenant}&to=${encodeURIComponent(target)}&sig=${signature}${extra}`,
      { headers: { 'user-agent': UA } },
    );
  const ok = await link(
    'gr',
    to,
    await sig('gr', to),
    '&id=a8-click&u=https%3A%2F%2Fwww.skroutz.gr%2Fs%2F1&p.shop_id=9',
  );
  t.equal(ok.status, 302);
  t.equal(ok.headers.location, to);
  t.equal(ok.headers['cache-control'], 'no-store');
  const e = await stored('a8-click');
  t.equal(e.type, 'click');
  t.equal(e.url, to);
  t.equal(e.referrer, 'https://www.skroutz.gr/s/1');
  t.same(e.props, { shop_id: '9' });
  t.equal((e.ctx as Record<string, unknown>).source, 'r');
  const tampered = await link('gr', `${to}&evil=1`, await sig('gr', to));
  t.equal(tampered.status, 400);
  t.notOk(tampered.headers.location);
  t.equal(json(tampered.body).error, 'bad_signature');
  const badSig = await link('gr', to, 'f'.repeat(64));
  t.equal(badSig.status, 400);
  t.notOk(badSig.headers.location);
  const js = 'javascript:alert(1)';
  const script = await link('gr', js, await sig('gr', js));
  t.equal(script.status, 400);
  t.equal(json(script.body).error, 'bad_target');
  t.notOk(script.headers.location);
  for (let i = 0; i < 3; i += 1) {
    const limited = await link('rl', to, await sig('rl', to));
    t.equal(limited.status, 302, `rate-limited tenant still redirects (${i})`);
    t.equal(limited.headers.location, to);
  }
});

t.test('A9: cookie identity', async (t) => {
  const first = await pixel('id=a9-1');
  const cookies = first.headers['set-cookie'] as string[];
  t.equal(cookies.length, 2);
  const visitor =
    /^_scr_v=([A-Za-z0-9_-]{22}); Max-Age=31536000; Path=\/; Secure; HttpOnly; SameSite=Lax$/.exec(
      cookies[0] ?? '',
    );
  const session =
    /^_scr_s=([A-Za-z0-9_-]{22}); Max-Age=1800; Path=\/; Secure; HttpOnly; SameSite=Lax$/.exec(
      cookies[1] ?? '',
    );
  t.ok(visitor, `visitor cookie: ${cookies[0]}`);
  t.ok(session, `session cookie: ${cookies[1]}`);
  const e1 = await stored('a9-1');
  t.equal(e1.visitor_id, visitor?.[1]);
  t.equal(e1.session_id, session?.[1]);
  const second = await pixel('id=a9-2', {
    cookie: `_scr_v=${visitor?.[1]}; _scr_s=${session?.[1]}`,
  });
  const again = second.headers['set-cookie'] as string[];
  t.equal(again.length, 1, 'only the session cookie is re-sent');
  t.match(again[0], new RegExp(`^_scr_s=${session?.[1]}; Max-Age=1800`));
  const e2 = await stored('a9-2');
  t.equal(e2.visitor_id, visitor?.[1]);
  t.equal(e2.session_id, session?.[1]);
});

t.test('A11: DNT and GPC anonymize or drop, per tenant', async (t) => {
  const anon = await pixel('id=a11-anon', { dnt: '1' });
  t.notOk(anon.headers['set-cookie'], 'no cookie when anonymized');
  const e = await stored('a11-anon');
  t.equal(e.visitor_id, null);
  t.equal(e.session_id, null);
  t.equal((e.ctx as Record<string, unknown>).ip, null);
  t.equal((e.ctx as Record<string, unknown>).dnt, true);
  const before = await metric(app.admin, 'scratchd_events_dropped_total', {
    tenant: 'uk',
    reason: 'opt_out',
  });
  const dropped = await pixel('id=a11-drop', { host: 'www.scrooge.co.uk', 'sec-gpc': '1' });
  t.equal(dropped.headers['x-scratchd-status'], 'dropped; reason=opt_out');
  t.equal(
    await metric(app.admin, 'scratchd_events_dropped_total', { tenant: 'uk', reason: 'opt_out' }),
    before + 1,
  );
  const batch = await postJson('/batch', JSON.stringify([{ id: 'a11-b1' }, { id: 'a11-b2' }]), {
    host: 'www.scrooge.co.uk',
    dnt: '1',
  });
  t.equal(batch.status, 202);
  t.same(json(batch.body), { accepted: 0, dropped: 2, ids: [], rejected: [] });
  await pixel('id=a11-marker');
  await stored('a11-marker');
  t.notOk(
    events().some((x) => x.id === 'a11-drop' || x.id === 'a11-b1'),
    'nothing stored',
  );
});

t.test('A12: IP truncation, X-Forwarded-For from a trusted proxy, bots', async (t) => {
  await pixel('id=a12-v4', { 'x-forwarded-for': '203.0.113.195, 10.0.0.1' });
  await pixel('id=a12-v6', { 'x-forwarded-for': '2001:db8:85a3:8d3:1319:8a2e:370:7348' });
  t.equal(
    ((await stored('a12-v4')).ctx as Record<string, unknown>).ip,
    '10.0.0.0',
    'the first untrusted hop from the right',
  );
  t.equal(((await stored('a12-v6')).ctx as Record<string, unknown>).ip, '2001:db8:85a3::');
  const bot = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';
  await pixel('id=a12-bot', { 'user-agent': bot });
  const flagged = await stored('a12-bot');
  t.equal((flagged.ctx as Record<string, unknown>).bot, true);
  const res = await pixel('id=a12-bot-uk', { host: 'www.scrooge.co.uk', 'user-agent': bot });
  t.equal(res.headers['x-scratchd-status'], 'dropped; reason=bot');
  t.ok(
    (await metric(app.admin, 'scratchd_events_dropped_total', { tenant: 'uk', reason: 'bot' })) >=
      1,
  );
});

t.test('A12: X-Forwarded-For is ignored from peers that are not trusted proxies', async (t) => {
  const other = await boot(
    t,
    { ...config, trusted_proxies: ['10.0.0.0/8'] },
    { env: { SCR_TEST_REDIRECT_KEY: REDIRECT_KEY } },
  );
  await httpRequest(`${other.base}/track?id=a12-untrusted`, {
    headers: { host: 'x', 'user-agent': UA, 'x-forwarded-for': '203.0.113.9' },
  });
  let found: Record<string, unknown> | undefined;
  await eventually(
    () =>
      (found = archived(join(other.dataDir, 'events')).find((e) => e.id === 'a12-untrusted')) !==
      undefined,
    10_000,
    50,
  );
  t.equal((found?.ctx as Record<string, unknown>).ip, '127.0.0.0');
  t.equal(await other.cli.stop('SIGTERM'), 0);
});

t.test('A4: tenants by Host and by tid; the * tenant catches the rest', async (t) => {
  await pixel('id=a4-host');
  await pixel('id=a4-tid&tid=uk');
  await pixel('id=a4-other', { host: 'unknown.example:8080' });
  t.equal((await stored('a4-host')).tenant, 'gr');
  t.equal((await stored('a4-tid')).tenant, 'uk');
  t.equal((await stored('a4-other')).tenant, 'any');
  const dirs = readdirSync(join(app.dataDir, 'events')).sort();
  t.same(
    dirs.filter((d) => ['any', 'gr', 'uk'].includes(d)),
    ['any', 'gr', 'uk'],
    'a directory per tenant',
  );
});

t.test('debug=1 answers JSON with the stored event', async (t) => {
  const res = await pixel('id=dbg-1&debug=1&e=srch&p.q=tv');
  t.equal(res.status, 200);
  t.equal(res.headers['content-type'], 'application/json');
  const body = json(res.body);
  t.equal(body.status, 'accepted');
  t.equal((body.event as Record<string, unknown>).type, 'search');
  const bad = await pixel('debug=1&e=bogus');
  t.equal(json(bad.body).status, 'rejected');
  t.equal(json(bad.body).reason, 'invalid_event');
});

t.test('A3: oversized headers get 431', async (t) => {
  const res = await httpRequest(`${app.base}/track`, {
    headers: { 'x-big': 'a'.repeat(17 * 1024) },
  });
  t.equal(res.status, 431);
});

t.test('A3: a client trickling headers past headers_timeout_ms is disconnected', async (t) => {
  const slow = await boot(
    t,
    { ...config, limits: { headers_timeout_ms: 1000, request_timeout_ms: 2000 } },
    { env: { SCR_TEST_REDIRECT_KEY: REDIRECT_KEY } },
  );
  const url = new URL(slow.base);
  const socket = connect(Number(url.port), url.hostname);
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  const closed = once(socket, 'close');
  socket.write('GET /track HTTP/1.1\r\nHost: www.skroutz.gr\r\n');
  const timer = setInterval(() => socket.write('X-Slow: a\r\n'), 200);
  const started = Date.now();
  await closed;
  clearInterval(timer);
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 900 && elapsed < 5000, `closed after ${elapsed} ms`);
  t.match(received, /^(HTTP\/1\.1 408|$)/, 'a 408 where Node can send one');
  t.equal(await slow.cli.stop('SIGTERM'), 0);
});
