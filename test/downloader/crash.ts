// Limits across processors and crash safety (acceptance C1, C3, C4, C5, C6, E8, A4): components
// are SIGKILLed and SIGTERMed mid-work, and every job must still end exactly once.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import {
  post,
  setupDownloader,
  startOrigin,
  startReceiver,
  submit,
} from '../helpers/downloader.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('C1: two processors share an aggregation limit of 3', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/slow', (_req, res) => {
    setTimeout(() => res.writeHead(200).end('done'), 400);
  });
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('processor');
  await dl.start('notifier');
  const jobs = Array.from({ length: 15 }, () =>
    submit(api, {
      url: `${origin.url}/slow`,
      aggr_id: 'shop',
      aggr_limit: 3,
      callback_url: receiver.url,
    }),
  );
  await Promise.all(jobs);
  const callbacks = await receiver.waitFor(15, 30_000);
  t.equal(callbacks.filter((c) => c.body.success === true).length, 15);
  t.equal(origin.peak, 3, 'the origin saw exactly 3 requests at once at the peak');
  const stats = (await (await fetch(`${api}/stats/processor`)).json()) as Record<string, number>;
  t.equal(stats.alive, 2, 'both processors report');
  t.ok(stats.maxWorkers <= stats.spawnedWorkers, 'merged peaks stay below totals');
});

t.test('C3: a processor SIGKILLed mid-download; a peer completes the job once', async (t) => {
  const dl = setupDownloader(t, {
    processor: { visibility_timeout_ms: 3000, timeouts: { attempt_ms: 10_000 } },
  });
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  const body = Buffer.alloc(5 * 1024 * 1024, 7);
  let first = true;
  origin.route('/trickle', (_req, res) => {
    res.writeHead(200, { 'Content-Length': body.length });
    if (!first) {
      res.end(body);
      return;
    }
    first = false;
    // The first request trickles forever (until its processor dies).
    let sent = 0;
    const timer = setInterval(() => {
      if (res.destroyed || sent >= body.length) return clearInterval(timer);
      res.write(body.subarray(sent, sent + 16 * 1024));
      sent += 16 * 1024;
    }, 200);
    res.on('close', () => clearInterval(timer));
  });
  const { url: api } = await dl.startApi();
  const doomed = await dl.start('processor');
  await dl.start('notifier');
  const id = await submit(api, {
    url: `${origin.url}/trickle`,
    aggr_id: 'shop',
    aggr_limit: 4,
    callback_url: receiver.url,
  });
  while (!origin.hits.get('/trickle')) await sleep(50);
  await sleep(300);
  await doomed.stop('SIGKILL');
  const killedAt = Date.now();
  await dl.start('processor');
  const [cb] = await receiver.waitFor(1, 20_000);
  t.ok(Date.now() - killedAt >= 2000, 'reclaimed only after the lease expired');
  t.equal(cb?.body.success, true, 'the job succeeded');
  t.equal(cb?.body.job_id, id);
  t.ok(readFileSync(join(dl.rootDir, id.slice(0, 3), id)).equals(body), 'the whole body is stored');
  await sleep(1500);
  t.equal(receiver.all.length, 1, 'exactly one callback');
  t.equal(origin.hits.get('/trickle'), 2, 'downloaded again once');
});

t.test(
  'C4: a notifier SIGKILLed mid-delivery; the callback is sent again, not Failed',
  async (t) => {
    const dl = setupDownloader(t, { notifier: { visibility_timeout_ms: 2000 } });
    const origin = await startOrigin(t);
    origin.route('/f', (_req, res) => res.writeHead(200).end('x'));
    const seen: string[] = [];
    let hold = true;
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push(Buffer.concat(chunks).toString('utf8'));
        if (hold) return; // never answers: the notifier is killed while waiting
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      receiver.closeAllConnections();
      receiver.close();
    });
    const cbUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/cb`;
    const { url: api } = await dl.startApi();
    await dl.start('processor');
    const doomed = await dl.start('notifier');
    const id = await submit(api, {
      url: `${origin.url}/f`,
      aggr_id: 'a',
      aggr_limit: 1,
      callback_url: cbUrl,
    });
    while (seen.length === 0) await sleep(50);
    await doomed.stop('SIGKILL');
    hold = false;
    await dl.start('notifier');
    const deadline = Date.now() + 15_000;
    while (seen.length < 2 && Date.now() < deadline) await sleep(50);
    t.equal(seen.length, 2, 're-delivered once the lease expired');
    t.equal(JSON.parse(seen[1]).job_id, id);
    await sleep(500);
    t.equal(await dl.redis.exists(`${dl.prefix}job:${id}`), 0, 'delivered: the record is gone');
  },
);

t.test('E8 and A4: callback retries, Failed, then /retry', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  origin.route('/f', (_req, res) => res.writeHead(200).end('file'));
  const receiver = await startReceiver(t);
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');

  receiver.statuses.push(500);
  const id = await submit(api, {
    url: `${origin.url}/f`,
    aggr_id: 'a',
    aggr_limit: 2,
    callback_url: receiver.url,
  });
  await receiver.waitFor(1);
  t.equal(receiver.all.length, 2, 'a 500, then a delivered retry');
  t.equal(
    receiver.all[0]?.body.download_url,
    receiver.all[1]?.body.download_url,
    'the same download_url both times',
  );
  t.equal(receiver.all[1]?.body.download_url, `${dl.downloadUrl}/${id.slice(0, 3)}/${id}`);

  receiver.statuses.push(500, 503);
  const failing = await submit(api, {
    url: `${origin.url}/f`,
    aggr_id: 'a',
    aggr_limit: 2,
    callback_url: receiver.url,
  });
  const key = `${dl.prefix}job:${failing}`;
  const deadline = Date.now() + 10_000;
  while ((await dl.redis.hget(key, 'cb_state')) !== 'Failed' && Date.now() < deadline)
    await sleep(50);
  t.equal(await dl.redis.hget(key, 'cb_state'), 'Failed', 'two failed attempts leave it Failed');
  t.equal(await dl.redis.hget(key, 'cb_meta'), 'Received Status: 503 Service Unavailable');
  await sleep(300);
  const notifierStats = (await (await fetch(`${api}/stats/notifier`)).json()) as Record<
    string,
    number
  >;
  t.equal(notifierStats.failedCallbacks, 1);
  const retried = await post(api, '', `/retry/${failing}`);
  t.equal(retried.status, 204);
  t.equal(retried.text, '');
  const callbacks = await receiver.waitFor(2);
  t.equal(callbacks[1]?.body.job_id, failing, 'the retried callback arrives');
});

t.test(
  'C6: SIGTERM with 20 slow downloads; exit 0 in time, all succeed after restart',
  async (t) => {
    const dl = setupDownloader(t, { processor: { shutdown_grace_ms: 1500 } });
    const origin = await startOrigin(t);
    const receiver = await startReceiver(t);
    let slow = true;
    origin.route('/slow', (_req, res) => {
      if (slow) setTimeout(() => res.writeHead(200).end('late'), 15_000).unref();
      else res.writeHead(200).end('quick');
    });
    const { url: api } = await dl.startApi();
    const processor = await dl.start('processor');
    await dl.start('notifier');
    await Promise.all(
      Array.from({ length: 20 }, () =>
        submit(api, {
          url: `${origin.url}/slow`,
          aggr_id: 'a',
          aggr_limit: 20,
          callback_url: receiver.url,
        }),
      ),
    );
    while ((origin.hits.get('/slow') ?? 0) < 20) await sleep(50);
    const started = Date.now();
    t.equal(await processor.stop('SIGTERM', 10_000), 0, 'exit 0');
    t.ok(Date.now() - started < 1500 + 5000, 'within grace + 5 s');
    t.match(processor.output(), /"msg":"processor_stopped".*"requeued":20/);
    slow = false;
    await dl.start('processor');
    const callbacks = await receiver.waitFor(20, 20_000);
    t.equal(callbacks.filter((c) => c.body.success === true).length, 20, 'all succeed');
    t.notOk(
      receiver.all.some((c) => /shutdown|cancel/i.test(String(c.body.error))),
      'no failure mentions shutdown',
    );
  },
);

t.test(
  'B3: a lease lost on the last allowed attempt fails the job with the lease error',
  async (t) => {
    const dl = setupDownloader(t, { processor: { visibility_timeout_ms: 1500 } });
    const origin = await startOrigin(t);
    const receiver = await startReceiver(t);
    origin.route('/hang', (_req, res) => {
      res.writeHead(200, { 'Content-Length': '1000' });
      res.write('x');
    });
    const { url: api } = await dl.startApi();
    const doomed = await dl.start('processor');
    await dl.start('notifier');
    const id = await submit(api, {
      url: `${origin.url}/hang`,
      aggr_id: 'b3',
      aggr_limit: 4,
      max_retries: 0,
      callback_url: receiver.url,
    });
    while (!origin.hits.get('/hang')) await sleep(50);
    await doomed.stop('SIGKILL');
    await dl.start('processor');
    const [cb] = await receiver.waitFor(1, 15_000);
    t.equal(cb?.body.job_id, id);
    t.equal(
      cb?.body.error,
      'Error while downloading file, lease expired before the attempt finished, retriable: true, internal: false',
    );
    t.equal(origin.hits.get('/hang'), 1, 'not downloaded again');
  },
);

t.test('C2: a backlog in one aggregation does not delay another', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/slow', (_req, res) => setTimeout(() => res.writeHead(200).end('a'), 2000).unref());
  origin.route('/quick', (_req, res) => res.writeHead(200).end('b'));
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  await dl.start('notifier');
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next++ < 1000) {
        await submit(api, {
          url: `${origin.url}/slow`,
          aggr_id: 'A',
          aggr_limit: 1,
          callback_url: receiver.url,
        });
      }
    }),
  );
  const posted = Date.now();
  const id = await submit(api, {
    url: `${origin.url}/quick`,
    aggr_id: 'B',
    aggr_limit: 1,
    callback_url: receiver.url,
  });
  const deadline = posted + 5000;
  while (!receiver.callbacks.some((c) => c.body.job_id === id) && Date.now() < deadline)
    await sleep(10);
  const cb = receiver.callbacks.find((c) => c.body.job_id === id);
  t.ok(cb, 'aggregation B was called back');
  t.ok(cb && cb.at - posted < 1000, `within 1 s (${cb ? cb.at - posted : 'none'} ms)`);
  t.ok(origin.peak <= 2, `A ran one at a time, B beside it (peak ${origin.peak})`);
});
