// End to end: the three components from the built executable, a loopback origin and callback
// receiver, the real Redis. One deployment serves the cases that need no special config.
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import {
  FILES,
  setupDownloader,
  startOrigin,
  startReceiver,
  submit,
  type Callback,
} from '../helpers/downloader.js';

const KEYS = [
  'success',
  'error',
  'extra',
  'image_size',
  'resource_url',
  'download_url',
  'job_id',
  'response_code',
  'delivered',
  'delivery_error',
  'sha256',
];

t.test('one deployment, many jobs', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  const serve = (path: string, body: Buffer, type = 'application/octet-stream'): void =>
    origin.route(path, (_req, res) => {
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length });
      res.end(body);
    });
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const job = (path: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    url: `${origin.url}${path}`,
    aggr_id: 'shop',
    aggr_limit: 4,
    callback_url: receiver.url,
    ...extra,
  });
  const callbackFor = async (id: string, timeoutMs = 20_000): Promise<Callback> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = receiver.callbacks.find((c) => c.body.job_id === id);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no callback for ${id}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  t.test('E1: a file is stored byte-identical and called back with its sha256', async (t) => {
    serve('/sample-1.jpg', FILES.jpeg, 'image/jpeg');
    const id = await submit(api, job('/sample-1.jpg', { extra: 'foobar' }));
    t.match(id, /^[A-Za-z0-9_-]{14}$/);
    const cb = await callbackFor(id);
    t.same(Object.keys(cb.body), KEYS, 'keys in the original order, sha256 last');
    const stored = join(dl.rootDir, id.slice(0, 3), id);
    t.ok(readFileSync(stored).equals(FILES.jpeg), 'stored bytes equal the origin bytes');
    t.same(cb.body, {
      success: true,
      error: '',
      extra: 'foobar',
      image_size: '',
      resource_url: `${origin.url}/sample-1.jpg`,
      download_url: `${dl.downloadUrl}/${id.slice(0, 3)}/${id}`,
      job_id: id,
      response_code: 200,
      delivered: true,
      delivery_error: '',
      sha256: createHash('sha256').update(FILES.jpeg).digest('hex'),
    });
  });

  t.test('E2: a 404 fails at once', async (t) => {
    const id = await submit(api, job('/missing'));
    const cb = await callbackFor(id);
    t.equal(cb.body.success, false);
    t.match(cb.body.error, /404 Not Found/);
    t.equal(
      cb.body.error,
      'Error while processing response, Received status code 404 Not Found, retriable: false, internal: false',
    );
    t.equal(cb.body.download_url, '');
    t.equal(cb.body.response_code, 404);
    t.equal(origin.hits.get('/missing'), 1, 'not retried');
  });

  t.test('E3: MIME rules', async (t) => {
    serve('/e3.png', FILES.png, 'image/png');
    serve('/e3.psd', FILES.psd);
    const cases = [
      {
        name: 'mismatch',
        path: '/e3.png',
        mime: 'image/jpeg',
        ok: false,
        error: /Expected mime-type to be \(image\/jpeg\), found \(image\/png\)/,
      },
      { name: 'wildcard */*', path: '/e3.png', mime: '*/*', ok: true },
      {
        name: 'bare * never spans a slash',
        path: '/e3.png',
        mime: '*',
        ok: false,
        error: /Expected mime-type to be \(\*\)/,
      },
      {
        name: 'PSD excluded',
        path: '/e3.psd',
        mime: '!image/vnd.adobe.photoshop,image/*',
        ok: false,
        error:
          /Expected mime-type not to be \(image\/vnd.adobe.photoshop\) found - \(image\/vnd.adobe.photoshop\)/,
      },
      {
        name: 'PNG passes the PSD exclusion',
        path: '/e3.png',
        mime: '!image/vnd.adobe.photoshop,image/*',
        ok: true,
      },
      {
        name: 'items combine with AND',
        path: '/e3.png',
        mime: 'image/jpeg,image/png',
        ok: false,
        error: /Expected mime-type/,
      },
    ];
    const ids = await Promise.all(
      cases.map((c) => submit(api, job(c.path, { mime_type: c.mime }))),
    );
    for (const [i, c] of cases.entries()) {
      const cb = await callbackFor(ids[i]);
      t.equal(cb.body.success, c.ok, c.name, { mime: c.mime });
      if (c.error) t.match(cb.body.error, c.error, c.name);
    }
  });

  t.test('E4: image sizes', async (t) => {
    serve('/e4.png', FILES.png);
    serve('/e4.jpg', FILES.jpeg);
    serve('/e4.pdf', FILES.pdf);
    serve('/e4.bmp', FILES.bmp);
    const cases = [
      { path: '/e4.png', size: '10x10' },
      { path: '/e4.jpg', size: '32x16' },
      { path: '/e4.pdf', size: '' },
      { path: '/e4.bmp', size: '' },
    ];
    for (const c of cases) {
      const cb = await callbackFor(await submit(api, job(c.path, { extract_image_size: true })));
      t.equal(cb.body.success, true, c.path);
      t.equal(cb.body.image_size, c.size, c.path);
    }
  });

  t.test(
    'E5: 500, 503, then 200 succeeds on attempt 3; max_retries bounds the attempts',
    async (t) => {
      const script = [500, 503];
      origin.route('/flaky', (_req, res) => {
        const status = script.shift() ?? 200;
        res.writeHead(status);
        res.end(status === 200 ? 'fine' : 'bad');
      });
      const cb = await callbackFor(await submit(api, job('/flaky')));
      t.equal(cb.body.success, true);
      t.equal(origin.hits.get('/flaky'), 3);
      origin.route('/down0', (_req, res) => res.writeHead(500).end());
      origin.route('/down1', (_req, res) => res.writeHead(500).end());
      const [zero, one] = await Promise.all([
        submit(api, job('/down0', { max_retries: 0 })),
        submit(api, job('/down1', { max_retries: 1 })),
      ]);
      t.match(
        (await callbackFor(zero)).body.error,
        /Received status code 500 Internal Server Error, retriable: true/,
      );
      t.equal((await callbackFor(one)).body.success, false);
      t.equal(origin.hits.get('/down0'), 1, 'max_retries 0: one request');
      t.equal(origin.hits.get('/down1'), 2, 'max_retries 1: two requests');
    },
  );

  t.test(
    'E6: a body shorter than its Content-Length is unexpected EOF, not a mime error',
    async (t) => {
      origin.route('/short', (_req, res) => {
        res.writeHead(200, { 'Content-Length': '42' });
        res.flushHeaders();
        setTimeout(() => res.socket?.destroy(), 20);
      });
      const cb = await callbackFor(await submit(api, job('/short', { mime_type: 'image/*' })));
      t.equal(cb.body.success, false);
      t.match(cb.body.error, /unexpected EOF/);
      t.notMatch(cb.body.error, /mime/);
      t.equal(origin.hits.get('/short'), 3, 'three attempts');
    },
  );

  t.test(
    'E10: job headers override config ones; gzip is asked for and stored decoded',
    async (t) => {
      const text = Buffer.from('plain text that travels gzipped '.repeat(20));
      let seen: Record<string, unknown> = {};
      origin.route('/gz', (req, res) => {
        seen = req.headers;
        res.writeHead(200, { 'Content-Encoding': 'gzip', 'Content-Type': 'text/plain' });
        res.end(gzipSync(text));
      });
      const id = await submit(
        api,
        job('/gz', { request_headers: { 'X-Job': 'yes', 'user-agent': 'job-agent' } }),
      );
      const cb = await callbackFor(id);
      t.equal(cb.body.success, true);
      t.equal(seen['x-job'], 'yes');
      t.equal(seen['user-agent'], 'job-agent');
      t.equal(seen['accept-encoding'], 'gzip');
      t.ok(readFileSync(join(dl.rootDir, id.slice(0, 3), id)).equals(text), 'stored decoded');
    },
  );

  t.test('S1: 429 with Retry-After is retried no earlier than asked', async (t) => {
    const times: number[] = [];
    origin.route('/throttled', (_req, res) => {
      times.push(Date.now());
      if (times.length === 1) res.writeHead(429, { 'Retry-After': '2' }).end();
      else res.writeHead(200).end('ok');
    });
    const cb = await callbackFor(await submit(api, job('/throttled')));
    t.equal(cb.body.success, true);
    t.equal(times.length, 2);
    t.ok(times[1] - times[0] >= 2000, 'waited for Retry-After');
  });

  t.test('S2: oversize bodies fail without being stored', async (t) => {
    // The deployment keeps the default limit; a Content-Length above it fails before reading.
    origin.route('/huge', (_req, res) => {
      res.writeHead(200, { 'Content-Length': String(200 * 1024 * 1024) });
      res.write(Buffer.alloc(1024));
    });
    const id = await submit(api, job('/huge'));
    const cb = await callbackFor(id);
    t.equal(cb.body.success, false);
    t.match(
      cb.body.error,
      /response body exceeds the maximum size of 104857600 bytes, retriable: false/,
    );
    t.notOk(existsSync(join(dl.rootDir, id.slice(0, 3), id)));
  });
});

t.test('the reaper deletes a delivered file after deletion_interval', async (t) => {
  // 0.02 minutes: 1.2 s.
  const dl = setupDownloader(t, { notifier: { deletion_interval: 0.02 } });
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/f', (_req, res) => res.writeHead(200).end('short-lived'));
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  const id = await submit(api, {
    url: `${origin.url}/f`,
    aggr_id: 'r',
    aggr_limit: 1,
    callback_url: receiver.url,
  });
  await receiver.waitFor(1);
  const stored = join(dl.rootDir, id.slice(0, 3), id);
  t.ok(existsSync(stored), 'stored while the deletion is pending');
  const deadline = Date.now() + 10_000;
  while (existsSync(stored) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(stored), 'deleted');
  await new Promise((r) => setTimeout(r, 700));
  const stats = (await (await fetch(`${api}/stats/processor`)).json()) as Record<string, number>;
  t.equal(stats.reaperSuccessfulDeletions, 1);
  t.equal(await dl.redis.zcard(`${dl.prefix}deletions`), 0, 'nothing left scheduled');
});
