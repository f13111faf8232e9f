// Coalescing, queueing and backpressure against the real engine (spec §3.3, §7.2 coalescing and
// queueing): identical requests share one container, waiters hold no slot, the backlog answers 503.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import {
  countStarts,
  eventually,
  postJob,
  project,
  sandbox,
  startServer,
} from '../helpers/mistry.js';

t.test('identical concurrent requests share one container', async (t) => {
  const box = await sandbox(t);
  await project(box, 'coalescing', {
    script: 'sleep $(cat params/s 2>/dev/null || echo 2)\nexit $(cat params/code)',
  });
  await project(box, 'other', { script: 'echo other > artifacts/out.txt' });
  const { base } = await startServer(t, box, { job_concurrency: 2 });

  for (const code of ['0', '35']) {
    let answers: Awaited<ReturnType<typeof postJob>>[] = [];
    const finishedAt: number[] = [];
    const starts = await countStarts(box.build, async () => {
      answers = await Promise.all(
        [0, 1].map(async (i) => {
          if (i === 1) await sleep(300);
          const answer = await postJob(base, { Project: 'coalescing', Params: { code } });
          finishedAt.push(Date.now());
          return answer;
        }),
      );
    });
    t.equal(starts, 1, `one container for exit ${code}`);
    t.same(
      answers.map((a) => a.status),
      [201, 201],
    );
    t.same(
      answers.map((a) => a.json?.ExitCode),
      [Number(code), Number(code)],
    );
    t.same(
      answers.map((a) => a.json?.Cached),
      [false, false],
    );
    t.same(answers.map((a) => a.json?.Coalesced).sort(), [false, true]);
    const waiter = answers.find((a) => a.json?.Coalesced === true);
    t.equal(waiter?.json?.Duration, -1_000_000_000);
    t.equal(waiter?.json?.Incremental, false);
    t.notOk('ContainerStdouterr' in (waiter?.json ?? {}), 'no logs in coalesced answers');
    t.ok(Math.abs(finishedAt[0] - finishedAt[1]) <= 200, 'waiter answered within 200 ms');
  }

  t.test('waiters on a sleeping build do not delay a distinct build', async (t) => {
    const waiting = Array.from({ length: 10 }, () =>
      postJob(base, { Project: 'coalescing', Params: { code: '7', s: '5' } }).then((answer) => ({
        answer,
        at: Date.now(),
      })),
    );
    await sleep(300);
    const other = await postJob(base, { Project: 'other' });
    const otherAt = Date.now();
    t.equal(other.status, 201);
    const settled = await Promise.all(waiting);
    t.ok(
      settled.every((s) => s.at > otherAt),
      'the distinct build finished while the first one still slept',
    );
    const results = settled.map((s) => s.answer);
    t.equal(results.filter((r) => r.json?.Coalesced === true).length, 9);
    t.ok(results.every((r) => r.json?.ExitCode === 7));
  });

  t.test('metrics count the coalesced answers', async (t) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    t.match(text, /^mistry_builds_coalesced\{[^}]*project="coalescing"[^}]*\} 11$/m);
    t.match(text, /^mistry_builds_started\{[^}]*project="coalescing"[^}]*\} 14$/m);
  });
});

t.test('a full backlog answers 503 with an empty body; cache hits still work', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: 'sleep $(cat params/s)' });
  await project(box, 'simple', { script: 'echo ok > artifacts/out.txt' });
  const { base } = await startServer(t, box, { job_concurrency: 1, job_backlog: 1 });
  t.equal((await postJob(base, { Project: 'simple' })).status, 201, 'warm the cache');

  const a = postJob(base, { Project: 'sleep', Params: { s: '3' } });
  await eventually(async () => {
    const items = (await (await fetch(`${base}/index`)).json()) as { state: string }[];
    return items.some((i) => i.state === 'pending') ? true : undefined;
  });
  const b = postJob(base, { Project: 'sleep', Params: { s: '1' } });
  await sleep(200);
  const c = await postJob(base, { Project: 'sleep', Params: { s: '2' } });
  t.equal(c.status, 503);
  t.equal(c.text, '', 'empty body');
  const hit = await postJob(base, { Project: 'simple' });
  t.equal(hit.status, 201);
  t.equal(hit.json?.Cached, true);
  const items = (await (await fetch(`${base}/index`)).json()) as {
    state: string;
    buildInfo: { Params: unknown };
  }[];
  const pending = items.filter((i) => i.state === 'pending');
  t.same(
    pending.map((i) => i.buildInfo.Params),
    [{ s: '3' }],
    'only A pending',
  );
  t.same([(await a).status, (await b).status], [201, 201]);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /^mistry_requests_rejected_total\{[^}]*reason="backlog_full"[^}]*\} 1$/m);
});

t.test(
  'many concurrent requests across projects, params and groups all get a BuildInfo',
  async (t) => {
    const box = await sandbox(t);
    for (const name of ['concurrent1', 'concurrent2', 'concurrent3', 'concurrent4']) {
      await project(box, name, { script: 'cat params/n > artifacts/n' });
    }
    await project(box, 'fresh', { script: 'echo fresh > artifacts/out.txt' });
    const { base } = await startServer(t, box, { job_concurrency: 2, job_backlog: 100 });
    const requests = [];
    for (let i = 0; i < 40; i++) {
      requests.push(
        postJob(base, {
          Project: `concurrent${(i % 4) + 1}`,
          Params: { n: String(i % 5) },
          Group: i % 3 === 0 ? '' : `g${i % 2}`,
        }),
      );
    }
    for (let i = 0; i < 10; i++) requests.push(postJob(base, { Project: 'fresh' }));
    const answers = await Promise.all(requests);
    t.same(
      answers.filter((a) => a.status !== 201).map((a) => a.text),
      [],
      'all 201',
    );
    t.ok(answers.every((a) => a.json?.ExitCode === 0 && typeof a.json.URL === 'string'));
    const fresh = answers.slice(40);
    t.equal(new Set(fresh.map((a) => a.json?.URL)).size, 1, 'one job for ten first requests');
  },
);

t.test('POST /jobs?stream=1 answers NDJSON for owner, waiter and cache hit', async (t) => {
  const box = await sandbox(t);
  await project(box, 'chatty', { script: 'for i in 1 2 3; do echo "line $i"; sleep 0.3; done' });
  const { base } = await startServer(t, box);
  const stream = async (): Promise<Record<string, unknown>[]> => {
    const response = await fetch(`${base}/jobs?stream=1`, {
      method: 'POST',
      body: JSON.stringify({ Project: 'chatty' }),
    });
    t.equal(response.status, 201);
    t.equal(response.headers.get('content-type'), 'application/x-ndjson');
    const text = await response.text();
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  };
  const [owner, waiter] = await Promise.all([stream(), sleep(200).then(stream)]);
  for (const [name, events] of [
    ['owner', owner],
    ['waiter', waiter],
  ] as const) {
    t.equal(events[0]?.type, 'job', name);
    t.match(events[0], { project: 'chatty', cached: false, coalesced: name === 'waiter' });
    const logs = events.filter((e) => e.type === 'log');
    t.match(
      logs.map((e) => e.data).join(''),
      /line 1\nline 2\nline 3\n/,
      `${name} log from offset 0`,
    );
    t.equal(logs[0]?.offset, 0);
    const last = events.at(-1) as {
      type: string;
      status: number;
      buildInfo: Record<string, unknown>;
    };
    t.equal(last.type, 'result');
    t.equal(last.status, 201);
    t.equal(last.buildInfo.ExitCode, 0);
    t.notOk('ContainerStdouterr' in last.buildInfo);
  }
  const hit = await stream();
  t.same(
    hit.map((e) => e.type),
    ['job', 'result'],
  );
  t.match(hit[0], { cached: true, state: 'ready' });
});
