// Safety and recovery (acceptance A3, S3, S4, C5, C8, C9): the SSRF guard, timeouts, frozen
// aggregation limits, lost limiter keys, restarts with delayed retries, a vanished storage dir.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { createServer, request as httpRequest } from 'node:http';
import { createServer as createNetServer, Socket, type AddressInfo } from 'node:net';
import t from 'tap';
import {
  setupDownloader,
  startOrigin,
  startReceiver,
  submit,
  type Callback,
} from '../helpers/downloader.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function callbackFor(
  callbacks: Callback[],
  id: string,
  timeoutMs = 20_000,
): Promise<Callback> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = callbacks.find((c) => c.body.job_id === id);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no callback for ${id}`);
    await sleep(50);
  }
}

t.test('S3: the SSRF guard refuses loopback unless allowed', async (t) => {
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/f', (_req, res) => res.writeHead(200).end('x'));
  origin.route('/hop', (_req, res) => res.writeHead(302, { Location: `${origin.url}/f` }).end());
  const port = new URL(origin.url).port;
  const targets = [`${origin.url}/f`, `http://localhost:${port}/f`];

  const guarded = setupDownloader(t, { processor: { ssrf_guard: { enabled: true } } });
  const { url: api } = await guarded.startApi();
  await guarded.start('processor');
  await guarded.start('notifier');
  for (const url of targets) {
    const cb = await callbackFor(
      receiver.callbacks,
      await submit(api, { url, aggr_id: 'a', aggr_limit: 2, callback_url: receiver.url }),
    );
    t.equal(cb.body.success, false, url);
    t.match(
      cb.body.error,
      /destination address (127\.0\.0\.1|::1) is not allowed, retriable: false/,
      url,
    );
  }
  // A public-looking name cannot be used offline, so the redirect case starts at an allowed
  // address: the guard with 127.0.0.1/32 allowed refuses a hop to ::1 (localhost over IPv6).
  const allowed = setupDownloader(t, {
    processor: { ssrf_guard: { enabled: true, allow: ['127.0.0.0/8'] } },
  });
  const { url: api2 } = await allowed.startApi();
  await allowed.start('processor');
  await allowed.start('notifier');
  for (const url of [...targets, `${origin.url}/hop`]) {
    const cb = await callbackFor(
      receiver.callbacks,
      await submit(api2, { url, aggr_id: 'a', aggr_limit: 2, callback_url: receiver.url }),
    );
    t.equal(cb.body.success, true, `${url} allowed`);
  }
  origin.route('/hop6', (_req, res) =>
    res.writeHead(302, { Location: `http://[::1]:${port}/f` }).end(),
  );
  const hop = await callbackFor(
    receiver.callbacks,
    await submit(api2, {
      url: `${origin.url}/hop6`,
      aggr_id: 'a',
      aggr_limit: 2,
      callback_url: receiver.url,
    }),
  );
  t.equal(hop.body.success, false, 'a redirect hop to a refused address fails');
  t.match(hop.body.error, /destination address ::1 is not allowed, retriable: false/);
});

t.test(
  'S4: a silent origin and a mid-body stall fail retriably after their timeouts',
  async (t) => {
    const dl = setupDownloader(t, { processor: { timeouts: { response_ms: 500, idle_ms: 900 } } });
    const origin = await startOrigin(t);
    const receiver = await startReceiver(t);
    origin.route('/silent', () => undefined);
    origin.route('/stall', (_req, res) => {
      res.writeHead(200, { 'Content-Length': '100' });
      res.write('partial');
    });
    const { url: api } = await dl.startApi();
    await dl.start('processor');
    await dl.start('notifier');
    const silent = await submit(api, {
      url: `${origin.url}/silent`,
      aggr_id: 'a',
      aggr_limit: 4,
      callback_url: receiver.url,
      max_retries: 0,
    });
    const stall = await submit(api, {
      url: `${origin.url}/stall`,
      aggr_id: 'a',
      aggr_limit: 4,
      callback_url: receiver.url,
      max_retries: 0,
    });
    const a = await callbackFor(receiver.callbacks, silent);
    t.match(
      a.body.error,
      /^Error while performing request, Timeout awaiting 'response' for 500ms, retriable: true, internal: false$/,
    );
    const b = await callbackFor(receiver.callbacks, stall);
    t.match(b.body.error, /^Error while downloading file, .*, retriable: true, internal: false$/);
  },
);

t.test('A3: a running aggregation keeps its limit; a new one takes the new limit', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/slow', (_req, res) => setTimeout(() => res.writeHead(200).end('x'), 300));
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const job = (limit: number): Record<string, unknown> => ({
    url: `${origin.url}/slow`,
    aggr_id: 'frozen',
    aggr_limit: limit,
    callback_url: receiver.url,
  });
  await Promise.all([1, 2, 3, 4].map(() => submit(api, job(1))));
  await Promise.all([1, 2, 3, 4].map(() => submit(api, job(5))));
  await receiver.waitFor(8, 20_000);
  t.equal(origin.peak, 1, 'the second POST did not raise the limit');
  // After the aggregation drained and idled for 5 s, the next POST sets the limit anew.
  const key = `${dl.prefix}aggr:frozen`;
  const deadline = Date.now() + 10_000;
  while ((await dl.redis.exists(key)) === 1 && Date.now() < deadline) await sleep(100);
  t.equal(await dl.redis.exists(key), 0, 'the idle aggregation record expired');
  origin.peak = 0;
  await Promise.all([1, 2, 3, 4, 5].map(() => submit(api, job(5))));
  await receiver.waitFor(13, 20_000);
  t.ok(origin.peak > 1, `the new limit applies (peak ${origin.peak})`);
});

t.test('C5: deleted limiter keys are re-created and work continues', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/slow', (_req, res) => setTimeout(() => res.writeHead(200).end('x'), 200));
  const { url: api } = await dl.startApi();
  const processor = await dl.start('processor');
  await dl.start('notifier');
  const job = {
    url: `${origin.url}/slow`,
    aggr_id: 'c5',
    aggr_limit: 2,
    callback_url: receiver.url,
  };
  await Promise.all(Array.from({ length: 6 }, () => submit(api, job)));
  while ((origin.hits.get('/slow') ?? 0) < 2) await sleep(20);
  const keys = await dl.redis.keys(`b_${dl.prefix}*`);
  t.ok(keys.length > 0, 'bottleneck keeps its state under the prefix');
  await dl.redis.del(...keys);
  await receiver.waitFor(6, 20_000);
  origin.peak = 0;
  await Promise.all(Array.from({ length: 6 }, () => submit(api, job)));
  await receiver.waitFor(12, 20_000);
  t.ok(origin.peak <= 2, `the limit holds again (peak ${origin.peak})`);
  t.match(processor.output(), /limiter_reinit/, 'the recovery is logged');
});

t.test('C8: a delayed retry survives a processor restart; C9: storage recovers', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  let fail = true;
  origin.route('/later', (_req, res) => {
    if (fail) res.writeHead(429, { 'Retry-After': '3' }).end();
    else res.writeHead(200).end('now');
  });
  const { url: api } = await dl.startApi();
  let processor = await dl.start('processor');
  await dl.start('notifier');
  const id = await submit(api, {
    url: `${origin.url}/later`,
    aggr_id: 'a',
    aggr_limit: 1,
    callback_url: receiver.url,
  });
  while (!origin.hits.get('/later')) await sleep(20);
  await sleep(200);
  t.equal(await processor.stop('SIGTERM'), 0);
  fail = false;
  processor = await dl.start('processor');
  const cb = await callbackFor(receiver.callbacks, id);
  t.equal(cb.body.success, true, 'the delayed retry ran after the restart');
  t.equal(origin.hits.get('/later'), 2);

  // C9: the storage dir vanishes (as an unwritable one would fail), then comes back.
  rmSync(dl.storageDir, { recursive: true });
  origin.route('/c9', (_req, res) => res.writeHead(200).end('stored at last'));
  const c9 = await submit(api, {
    url: `${origin.url}/c9`,
    aggr_id: 'b',
    aggr_limit: 1,
    callback_url: receiver.url,
  });
  const key = `${dl.prefix}job:${c9}`;
  while (Number(await dl.redis.hget(key, 'internal')) < 1) await sleep(50);
  t.equal(
    await dl.redis.hget(key, 'count'),
    '0',
    'the internal failure did not count as an attempt',
  );
  mkdirSync(dl.storageDir);
  const stored = await callbackFor(receiver.callbacks, c9);
  t.equal(stored.body.success, true, 'the job succeeds once storage recovers');
  t.match(processor.output(), /"msg":"internal_error"/);
});

t.test('E11: an aggregation proxy carries the download; other proxy schemes fail', async (t) => {
  const origin = await startOrigin(t);
  origin.route('/via', (_req, res) => res.writeHead(200).end('through the proxy'));
  const seen: string[] = [];
  const proxy = createServer((req, res) => {
    seen.push(req.url ?? '');
    const upstream = httpRequest(
      req.url ?? '',
      { method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    proxy.closeAllConnections();
    proxy.close();
  });
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const receiver = await startReceiver(t);
  const dl = setupDownloader(t);
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const via = await submit(api, {
    url: `${origin.url}/via`,
    aggr_id: 'proxied',
    aggr_limit: 2,
    aggr_proxy: proxyUrl,
    callback_url: receiver.url,
  });
  const cb = await callbackFor(receiver.callbacks, via);
  t.equal(cb.body.success, true);
  t.same(seen, [`${origin.url}/via`], 'the proxy saw the absolute-form request');
  const socks = await submit(api, {
    url: `${origin.url}/via`,
    aggr_id: 'socks',
    aggr_limit: 2,
    aggr_proxy: 'socks5://127.0.0.1:1080',
    callback_url: receiver.url,
  });
  const failed = await callbackFor(receiver.callbacks, socks);
  t.equal(
    failed.body.error,
    'Error while creating request, unsupported proxy scheme "socks5", retriable: false, internal: false',
  );
  await sleep(700);
  const stats = (await (await fetch(`${api}/stats/processor`)).json()) as Record<string, number>;
  t.equal(stats.invalidProxies, 1);
});

t.test(
  'C7 (connection form): every Redis connection cut mid-run; all jobs still call back',
  async (t) => {
    // The shared Redis cannot be restarted here, so a forwarder in front of it drops every
    // connection of all three components at once, as a restart would.
    const sockets = new Set<Socket>();
    const forwarder = createNetServer((client) => {
      const upstream = new Socket();
      upstream.connect(6379, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => sockets.delete(s));
      }
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      for (const s of sockets) s.destroy();
      forwarder.close();
    });
    const port = (forwarder.address() as AddressInfo).port;
    const dl = setupDownloader(t, { redis: { addr: `127.0.0.1:${port}` } });
    const origin = await startOrigin(t);
    const receiver = await startReceiver(t);
    origin.route('/f', (_req, res) => setTimeout(() => res.writeHead(200).end('x'), 100));
    const { url: api } = await dl.startApi();
    await dl.start('processor');
    await dl.start('notifier');
    const ids = await Promise.all(
      Array.from({ length: 40 }, () =>
        submit(api, {
          url: `${origin.url}/f`,
          aggr_id: `c7-${Math.random() < 0.5 ? 1 : 2}`,
          aggr_limit: 3,
          callback_url: receiver.url,
        }),
      ),
    );
    while (receiver.callbacks.length < 5) await sleep(20);
    for (const s of sockets) s.destroy();
    const callbacks = await receiver.waitFor(40, 60_000);
    const delivered = new Set(callbacks.map((c) => c.body.job_id));
    t.equal(delivered.size, 40, 'every job called back');
    t.ok(ids.every((id) => delivered.has(id)));
    t.ok(
      callbacks.every((c) => c.body.success === true),
      'all succeeded',
    );
  },
);

t.test('TLS: a certificate the processor cannot verify fails permanently, stat tls', async (t) => {
  const dir = t.testdir({});
  const made = spawnSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]);
  if (!t.equal(made.status, 0, 'openssl made a test certificate', { stderr: String(made.stderr) }))
    return;
  const server = createHttpsServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
    (_req, res) => res.writeHead(200).end('secret'),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const receiver = await startReceiver(t);
  const dl = setupDownloader(t);
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/f`;
  const id = await submit(api, { url, aggr_id: 'tls', aggr_limit: 1, callback_url: receiver.url });
  const cb = await callbackFor(receiver.callbacks, id);
  t.match(
    cb.body.error,
    /^Error while performing request, TLS Error occured: .*certificate.*, retriable: false, internal: false$/,
  );
  await sleep(700);
  const stats = (await (await fetch(`${api}/stats/processor`)).json()) as Record<string, number>;
  t.equal(stats['download.response.tls'], 1);
});

// The executable does not trust a test CA (NODE_EXTRA_CA_CERTS has no effect on it), so the
// handshake through the tunnel ends with the TLS error: that it is reached at all shows the
// tunnel carried it.
t.test('E11 over HTTPS: the TLS handshake goes through a CONNECT tunnel', async (t) => {
  const dir = t.testdir({});
  const made = spawnSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]);
  if (!t.equal(made.status, 0, 'openssl made a test certificate', { stderr: String(made.stderr) }))
    return;
  const body = Buffer.from('tunnelled bytes');
  const server = createHttpsServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
    (_req, res) => res.writeHead(200).end(body),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const connects: string[] = [];
  const proxy = createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req, client: Socket, head: Buffer) => {
    connects.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = new Socket();
    upstream.connect(Number(port), host === 'localhost' ? '127.0.0.1' : (host ?? ''), () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
    proxy.closeAllConnections();
    proxy.close();
  });
  const receiver = await startReceiver(t);
  const dl = setupDownloader(t);
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const port = (server.address() as AddressInfo).port;
  const id = await submit(api, {
    url: `https://localhost:${port}/f`,
    aggr_id: 'tunnel',
    aggr_limit: 1,
    aggr_proxy: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    callback_url: receiver.url,
  });
  const cb = await callbackFor(receiver.callbacks, id);
  t.same(connects, [`localhost:${port}`], 'one CONNECT to the origin');
  t.match(
    cb.body.error,
    /^Error while performing request, TLS Error occured: self-signed certificate/,
  );
});
