// Lifecycle end to end: spec §7 A19, A22-A28 (check, lock, SIGTERM, SIGKILL, spool recovery,
// reload, replay, metrics).
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli, spawnCli } from '../helpers/cli.js';
import { eventually } from '../helpers/net.js';
import { redisForTest } from '../helpers/services.js';
import {
  archived,
  boot,
  bootPath,
  fileSinkTenant,
  httpRequest,
  metric,
  post,
  tempDir,
  writeConfig,
} from './helpers/harness.js';
import { ownRedis } from './helpers/services.js';

const FAST_RETRY = {
  unhealthy_after: 1,
  backoff_base_ms: 20,
  backoff_max_ms: 200,
  linger_ms: 5,
  command_timeout_ms: 300,
};

t.test('A25: check prints ok or one path: message line per problem', async (t) => {
  const dir = tempDir(t);
  const good = writeConfig(dir, {
    tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
    sinks: { archive: { type: 'file' } },
  });
  const ok = await runCli(t, ['scratchd', 'check', '--config', good]);
  t.equal(ok.code, 0);
  t.equal(ok.stdout, 'ok: 1 tenants, 1 sinks');
  t.notOk(readdirSync(dir).includes('data'), 'check does not touch data_dir');
  const base = {
    tenants: { gr: { hosts: ['a.gr'], sinks: ['archive'] } },
    sinks: { archive: { type: 'file' }, k: { type: 'kafka', brokers: ['127.0.0.1:9092'] } },
  };
  const cases: {
    name: string;
    patch: (c: typeof base & Record<string, unknown>) => unknown;
    line: RegExp;
  }[] = [
    {
      name: 'duplicate host',
      patch: (c) => ({
        ...c,
        tenants: { ...c.tenants, uk: { hosts: ['A.gr:443'], sinks: ['archive'] } },
      }),
      line: /^tenants\.uk\.hosts\[0\]: duplicate host/,
    },
    {
      name: 'unknown sink',
      patch: (c) => ({ ...c, tenants: { gr: { hosts: ['a.gr'], sinks: ['nope'] } } }),
      line: /^tenants\.gr\.sinks\[0\]: names no sink/,
    },
    {
      name: 'non-hex secret',
      patch: (c) => ({
        ...c,
        tenants: { gr: { hosts: ['a.gr'], sinks: ['archive'], secrets_sha256: ['xyz'] } },
      }),
      line: /^tenants\.gr\.secrets_sha256\[0\]: must be a string matching/,
    },
    {
      name: 'unknown key',
      patch: (c) => ({ ...c, colour: 'blue' }),
      line: /^colour: is not a known key$/,
    },
    {
      name: 'bad topic',
      patch: (c) => ({
        ...c,
        tenants: { gr: { hosts: ['a.gr'], sinks: ['k'] } },
        sinks: { k: { type: 'kafka', brokers: ['127.0.0.1:9092'], topic: 'bad topic {tenant}' } },
      }),
      line: /^sinks\.k\.topic: must render to a topic/,
    },
    {
      name: 'missing redirect env',
      patch: (c) => ({
        ...c,
        tenants: {
          gr: { hosts: ['a.gr'], sinks: ['archive'], redirect_key_envs: ['SCR_UNSET_KEY_42'] },
        },
      }),
      line: /^tenants\.gr\.redirect_key_envs\[0\]: names environment variable SCR_UNSET_KEY_42/,
    },
    {
      name: 'out of range',
      patch: (c) => ({ ...c, sinks: { ...c.sinks, archive: { type: 'file', linger_ms: -1 } } }),
      line: /^sinks\.archive\.linger_ms: must be an integer from 0 to 60000 \(got -1\)$/,
    },
  ];
  for (const c of cases) {
    const path = join(dir, `${c.name.replace(/\W/g, '-')}.json`);
    writeFileSync(path, JSON.stringify(c.patch(base)));
    const bad = await runCli(t, ['scratchd', 'check', '--config', path]);
    t.equal(bad.code, 1, `${c.name}: exit 1`);
    const lines = bad.stderr.split('\n').filter((l) => l !== '');
    t.equal(lines.length, 1, `${c.name}: one line (${bad.stderr})`);
    t.match(lines[0], c.line, c.name);
  }
  const help = await runCli(t, ['scratchd', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--config/);
  t.match(help.stdout, /replay/);
});

t.test('A24: a second instance on the same data_dir exits 1 with the lock message', async (t) => {
  const config = {
    tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
    sinks: { archive: { type: 'file' } },
  };
  const first = await boot(t, config);
  const second = spawnCli(t, [
    'scratchd',
    '--config',
    first.configPath,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  t.equal(await second.exited(20_000), 1);
  t.match(
    second.output(),
    new RegExp(`data_dir ${first.dataDir} is locked by pid ${first.cli.child.pid}`),
  );
  t.equal(await first.cli.stop('SIGTERM'), 0);
});

t.test(
  'A22: SIGTERM under load: /readyz 503 at once, exit 0, every answered id delivered',
  async (t) => {
    const { redis, prefix } = redisForTest(t);
    const dir = tempDir(t);
    const config = {
      shutdown: { pre_stop_ms: 600, inflight_ms: 1000, drain_ms: 2000 },
      tenants: { gr: { hosts: ['*'], sinks: ['archive', 'redis'] } },
      sinks: {
        archive: { type: 'file', linger_ms: 20 },
        redis: {
          type: 'redis',
          url: 'redis://127.0.0.1:6379',
          key: `${prefix}{tenant}`,
          linger_ms: 20,
        },
      },
    };
    const app = await boot(t, config, { dir });
    const answered: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i += 1) {
        try {
          const res = await post(`${app.base}/e`, JSON.stringify({ id: `t-${i}` }));
          if (res.status === 202) answered.push(`t-${i}`);
        } catch {
          // refused once the listener closed: not answered, nothing promised
        }
      }
    })();
    await eventually(() => answered.length >= 100, 10_000, 10);
    const started = Date.now();
    app.cli.child.kill('SIGTERM');
    await eventually(async () => (await fetch(`${app.admin}/readyz`)).status === 503, 500, 20);
    t.pass('/readyz turned 503 at once');
    const code = await app.cli.exited(20_000);
    stop = true;
    await load;
    t.equal(code, 0, 'exit 0');
    t.ok(Date.now() - started < 600 + 1000 + 2000 + 2000, `stopped in ${Date.now() - started} ms`);
    t.match(app.cli.output(), /"msg":"shutdown_done"/);
    const again = await bootPath(t, dir, app.configPath);
    await eventually(
      async () => {
        const got = new Set(
          (await redis.xrange(`${prefix}gr`, '-', '+')).map(
            ([, f]) => (JSON.parse(f[1] ?? '{}') as { id: string }).id,
          ),
        );
        return answered.every((id) => got.has(id));
      },
      15_000,
      100,
    );
    const archivedIds = new Set(archived(join(dir, 'data', 'events')).map((e) => e.id));
    t.ok(
      answered.every((id) => archivedIds.has(id)),
      `all ${answered.length} answered ids archived`,
    );
    t.equal(await again.cli.stop('SIGTERM'), 0);
  },
);

t.test('A22: a second signal exits fast with everything spooled', async (t) => {
  const dir = tempDir(t);
  const redis = await ownRedis(t, dir);
  await redis.stop();
  const config = {
    shutdown: { pre_stop_ms: 10_000, inflight_ms: 1000, drain_ms: 5000 },
    tenants: { gr: { hosts: ['*'], sinks: ['redis'] } },
    sinks: {
      redis: {
        type: 'redis',
        url: redis.url,
        key: 'ev:{tenant}',
        ...FAST_RETRY,
        unhealthy_after: 100,
        backoff_max_ms: 5000,
      },
    },
  };
  const app = await boot(t, config, { dir });
  const ids: string[] = [];
  for (let i = 0; i < 30; i += 1) {
    t.equal((await post(`${app.base}/e`, JSON.stringify({ id: `s-${i}` }))).status, 202);
    ids.push(`s-${i}`);
  }
  app.cli.child.kill('SIGTERM');
  await app.cli.waitForLine(/shutdown_begin/);
  const started = Date.now();
  app.cli.child.kill('SIGTERM');
  const code = await app.cli.exited(10_000);
  t.ok(Date.now() - started < 3000, `fast exit (${Date.now() - started} ms)`);
  t.equal(code, 0, 'exit 0: everything in memory was spooled');
  await redis.start();
  const again = await bootPath(t, dir, app.configPath);
  const client = redis.client();
  await eventually(
    async () => {
      const got = new Set(
        (await client.xrange('ev:gr', '-', '+')).map(
          ([, f]) => (JSON.parse(f[1] ?? '{}') as { id: string }).id,
        ),
      );
      return ids.every((id) => got.has(id));
    },
    20_000,
    100,
  );
  t.pass('every answered id delivered after the restart');
  t.equal(await again.cli.stop('SIGTERM'), 0);
});

t.test(
  'A23: durable tenant, SIGKILL under load: every answered id delivered after restart',
  async (t) => {
    const { redis, prefix } = redisForTest(t);
    const dir = tempDir(t);
    const sinks = (linger: number) => ({
      redis: {
        type: 'redis',
        url: 'redis://127.0.0.1:6379',
        key: `${prefix}{tenant}`,
        linger_ms: linger,
        batch_events: 100_000,
      },
    });
    const tenants = {
      dur: { hosts: ['dur.test'], durability: 'durable', sinks: ['redis'] },
      que: { hosts: ['que.test'], sinks: ['redis'] },
    };
    const app = await boot(t, { tenants, sinks: sinks(60_000) }, { dir });
    const answered = { dur: [] as string[], que: [] as string[] };
    for (let i = 0; i < 40; i += 1) {
      for (const tenant of ['dur', 'que'] as const) {
        const res = await post(`${app.base}/e`, JSON.stringify({ id: `${tenant}-${i}` }), {
          host: `${tenant}.test`,
        });
        if (res.status === 202) answered[tenant].push(`${tenant}-${i}`);
      }
    }
    t.equal(await app.cli.stop('SIGKILL'), 'SIGKILL');
    t.equal(
      await redis.exists(`${prefix}dur`),
      0,
      'nothing was delivered before the kill (long linger)',
    );
    writeConfig(dir, { tenants, sinks: sinks(5) });
    const again = await bootPath(t, dir, app.configPath);
    await eventually(
      async () => {
        const got = new Set(
          (await redis.xrange(`${prefix}dur`, '-', '+')).map(
            ([, f]) => (JSON.parse(f[1] ?? '{}') as { id: string }).id,
          ),
        );
        return answered.dur.every((id) => got.has(id));
      },
      15_000,
      100,
    );
    t.pass(`all ${answered.dur.length} answered durable ids delivered`);
    const queued = await redis.xlen(`${prefix}que`);
    t.comment(
      `queued tenant: ${answered.que.length - queued} of ${answered.que.length} answered events lost to SIGKILL (allowed)`,
    );
    await eventually(
      () => readdirSync(join(dir, 'data', 'wal')).filter((f) => f.endsWith('.seg')).length === 0,
      10_000,
    );
    t.pass('settled WAL segments are deleted');
    t.equal(await again.cli.stop('SIGTERM'), 0);
  },
);

t.test(
  'A19: a spool segment cut mid-record: counted corrupt, every intact record delivered',
  async (t) => {
    const dir = tempDir(t);
    const redis = await ownRedis(t, dir);
    await redis.stop();
    const config = {
      tenants: { gr: { hosts: ['*'], sinks: ['redis'] } },
      sinks: { redis: { type: 'redis', url: redis.url, key: 'ev:{tenant}', ...FAST_RETRY } },
    };
    const app = await boot(t, config, { dir });
    for (let i = 0; i < 10; i += 1)
      t.equal((await post(`${app.base}/e`, JSON.stringify({ id: `c-${i}` }))).status, 202);
    t.equal(await app.cli.stop('SIGTERM'), 0);
    const spoolDir = join(dir, 'data', 'spool', 'redis');
    const seg =
      readdirSync(spoolDir)
        .filter((f) => f.endsWith('.seg'))
        .sort()
        .at(-1) ?? '';
    const path = join(spoolDir, seg);
    truncateSync(path, readFileSync(path).length - 5);
    await redis.start();
    const again = await bootPath(t, dir, app.configPath);
    t.equal(
      await metric(again.admin, 'scratchd_spool_corrupt_records_total', { sink: 'redis' }),
      1,
    );
    const client = redis.client();
    await eventually(async () => (await client.xlen('ev:gr')) >= 9, 15_000, 100);
    const got = (await client.xrange('ev:gr', '-', '+')).map(
      ([, f]) => (JSON.parse(f[1] ?? '{}') as { id: string }).id,
    );
    t.same(
      [...new Set(got)],
      Array.from({ length: 9 }, (_, i) => `c-${i}`),
      'every intact record, in order',
    );
    t.equal(await again.cli.stop('SIGTERM'), 0);
  },
);

t.test(
  'A26: SIGHUP adds a tenant, keeps the old config on errors, swaps a changed sink',
  async (t) => {
    const { redis, prefix } = redisForTest(t);
    const dir = tempDir(t);
    const sink = (key: string) => ({
      type: 'redis',
      url: 'redis://127.0.0.1:6379',
      key: `${prefix}${key}`,
      linger_ms: 5,
    });
    const app = await boot(
      t,
      { tenants: { gr: { hosts: ['gr.test'], sinks: ['r'] } }, sinks: { r: sink('one') } },
      { dir },
    );
    t.equal(
      (await post(`${app.base}/e`, '{"id":"h-0"}', { host: 'uk.test' })).status,
      404,
      'uk unknown at first',
    );
    writeConfig(dir, {
      tenants: {
        gr: { hosts: ['gr.test'], sinks: ['r'] },
        uk: { hosts: ['uk.test'], sinks: ['r'] },
      },
      sinks: { r: sink('one') },
    });
    app.cli.child.kill('SIGHUP');
    await eventually(
      async () => (await post(`${app.base}/e`, '{"id":"h-1"}', { host: 'uk.test' })).status === 202,
      5000,
      50,
    );
    t.pass('the added tenant is served without a restart');
    writeFileSync(app.configPath, '{"tenants": ');
    app.cli.child.kill('SIGHUP');
    await eventually(
      async () => (await metric(app.admin, 'scratchd_config_reload_errors_total')) === 1,
      5000,
      50,
    );
    t.match(app.cli.output(), /"msg":"config_reload_failed"/);
    t.equal(
      (await post(`${app.base}/e`, '{"id":"h-2"}', { host: 'uk.test' })).status,
      202,
      'the old config stays',
    );
    const ids: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i += 1) {
        const res = await post(`${app.base}/e`, JSON.stringify({ id: `sw-${i}` }), {
          host: 'gr.test',
        });
        if (res.status === 202) ids.push(`sw-${i}`);
      }
    })();
    await eventually(() => ids.length > 30, 5000, 10);
    writeConfig(dir, {
      tenants: {
        gr: { hosts: ['gr.test'], sinks: ['r'] },
        uk: { hosts: ['uk.test'], sinks: ['r'] },
      },
      sinks: { r: sink('two') },
    });
    app.cli.child.kill('SIGHUP');
    await app.cli.waitForLine(/"msg":"config_reloaded".*"swapped":\["r"\]/);
    await eventually(() => ids.length > 80, 5000, 10);
    stop = true;
    await load;
    await eventually(
      async () => {
        const got = new Set<string>();
        for (const key of ['one', 'two'])
          for (const [, f] of await redis.xrange(`${prefix}${key}`, '-', '+'))
            got.add((JSON.parse(f[1] ?? '{}') as { id: string }).id);
        return ids.every((id) => got.has(id));
      },
      10_000,
      100,
    );
    t.ok((await redis.xlen(`${prefix}two`)) > 0, 'the new sink config is in use');
    t.pass('no event lost across the sink swap');
    t.equal(await app.cli.stop('SIGTERM'), 0);
  },
);

t.test('A27: replay from the file archive into redis with tenant and time filters', async (t) => {
  const { redis, prefix } = redisForTest(t);
  const dir = tempDir(t);
  const config = {
    tenants: {
      gr: { hosts: ['gr.test'], sinks: ['archive'] },
      uk: { hosts: ['uk.test'], sinks: ['archive'] },
    },
    sinks: {
      archive: { type: 'file', linger_ms: 5 },
      r: { type: 'redis', url: 'redis://127.0.0.1:6379', key: `${prefix}{tenant}` },
    },
  };
  const app = await boot(t, config, { dir });
  for (let i = 0; i < 5; i += 1)
    await post(`${app.base}/e`, JSON.stringify({ id: `early-${i}` }), { host: 'gr.test' });
  await new Promise((r) => setTimeout(r, 50));
  const mid = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < 5; i += 1) {
    await post(`${app.base}/e`, JSON.stringify({ id: `late-${i}` }), { host: 'gr.test' });
    await post(`${app.base}/e`, JSON.stringify({ id: `uk-${i}` }), { host: 'uk.test' });
  }
  t.equal(await app.cli.stop('SIGTERM'), 0);
  const from = join(dir, 'data', 'events');
  const dry = await runCli(t, [
    'scratchd',
    'replay',
    '--config',
    app.configPath,
    '--sink',
    'r',
    '--from',
    from,
    '--tenant',
    'gr',
    '--since',
    mid,
    '--dry-run',
  ]);
  t.equal(dry.code, 0);
  t.equal(dry.stdout, 'read=15 written=0 skipped=10 failed=0');
  t.equal(await redis.exists(`${prefix}gr`), 0, 'dry run wrote nothing');
  const run = await runCli(t, [
    'scratchd',
    'replay',
    '--config',
    app.configPath,
    '--sink',
    'r',
    '--from',
    from,
    '--tenant',
    'gr',
    '--since',
    mid,
  ]);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'read=15 written=5 skipped=10 failed=0');
  const got = (await redis.xrange(`${prefix}gr`, '-', '+')).map(([, f]) => f[1] ?? '');
  t.same(
    got.map((s) => (JSON.parse(s) as { id: string }).id),
    Array.from({ length: 5 }, (_, i) => `late-${i}`),
  );
  const archivedLines = new Set(
    readdirSync(join(from, 'gr'), { recursive: true }).flatMap((f) =>
      String(f).endsWith('.jsonl')
        ? readFileSync(join(from, 'gr', String(f)), 'utf8').split('\n')
        : [],
    ),
  );
  t.ok(
    got.every((line) => archivedLines.has(line)),
    'the original bytes, unchanged',
  );
  t.equal(await redis.exists(`${prefix}uk`), 0, 'the tenant filter held');
  const bad = await runCli(t, [
    'scratchd',
    'replay',
    '--config',
    app.configPath,
    '--sink',
    'nope',
    '--from',
    from,
  ]);
  t.not(bad.code, 0);
  t.match(bad.stderr, /--sink nope names no sink/);
});

t.test('admin requests are counted by route and status, /metrics and /healthz too', async (t) => {
  const app = await boot(t, fileSinkTenant());
  const counts = async (): Promise<number[]> =>
    Promise.all(
      [
        ['healthz', '200'],
        ['readyz', '200'],
        ['other', '404'],
        ['metrics', '200'],
      ].map(([route, code]) => metric(app.admin, 'scratchd_http_requests_total', { route, code })),
    );
  const before = await counts();
  for (const path of ['/healthz', '/healthz', '/readyz', '/nope'])
    await fetch(`${app.admin}${path}`, { signal: AbortSignal.timeout(5000) });
  const after = await counts();
  const [healthz, readyz, other, metrics] = after.map((n, i) => n - (before[i] ?? 0));
  t.equal(healthz, 2);
  t.equal(readyz, 1);
  t.equal(other, 1);
  t.ok((metrics ?? 0) >= 4, `the four scrapes before count themselves (${metrics})`);
});

t.test(
  'A28: every metric exists, distinct URLs, IPs and visitors add no series, five label names',
  async (t) => {
    const app = await boot(t, {
      tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
      sinks: { archive: { type: 'file', linger_ms: 5 } },
    });
    await httpRequest(`${app.base}/track?id=m-1&zz=1`);
    await post(`${app.base}/e`, '{"id":"m-2","props":{"A":1}}');
    await httpRequest(`${app.base}/nope`);
    await eventually(
      async () => (await metric(app.admin, 'scratchd_sink_events_written_total')) >= 2,
      5000,
      20,
    );
    const series = async (): Promise<string[]> =>
      (await (await fetch(`${app.admin}/metrics`)).text())
        .split('\n')
        .filter((l) => l.startsWith('scratchd_'));
    // A scrape counts itself under route="metrics"; the first one makes that series exist.
    await series();
    const before = await series();
    const names = new Set(
      before.map((l) => l.replace(/[{ ].*$/, '').replace(/_(bucket|sum|count)$/, '')),
    );
    const expected = [
      'scratchd_http_requests_total',
      'scratchd_http_request_duration_seconds',
      'scratchd_events_received_total',
      'scratchd_events_accepted_total',
      'scratchd_fields_dropped_total',
      'scratchd_sink_events_written_total',
      'scratchd_sink_healthy',
      'scratchd_sink_batch_events',
      'scratchd_sink_write_duration_seconds',
      'scratchd_event_delivery_lag_seconds',
      'scratchd_queue_events',
      'scratchd_queue_bytes',
      'scratchd_memory_budget_bytes',
      'scratchd_memory_used_bytes',
      'scratchd_ready',
      'scratchd_spool_bytes',
      'scratchd_spool_segments',
      'scratchd_wal_bytes',
    ];
    for (const name of expected) t.ok(names.has(name), name);
    const text = await (await fetch(`${app.admin}/metrics`)).text();
    for (const name of [
      'scratchd_events_rejected_total',
      'scratchd_events_dropped_total',
      'scratchd_sink_write_errors_total',
      'scratchd_sink_dropped_total',
      'scratchd_spool_spilled_total',
      'scratchd_spool_replayed_total',
      'scratchd_spool_corrupt_records_total',
      'scratchd_wal_fsync_duration_seconds',
      'scratchd_dead_letter_total',
      'scratchd_salt_rotations_total',
      'scratchd_config_reloads_total',
      'scratchd_config_reload_errors_total',
    ]) {
      t.match(text, new RegExp(`# TYPE ${name} `), `${name} is declared`);
    }
    const batch = Array.from({ length: 500 }, (_, i) => ({
      url: `https://www.skroutz.gr/s/${i}`,
      props: { q: `q${i}` },
    }));
    for (let round = 0; round < 20; round += 1) {
      await post(`${app.base}/batch`, JSON.stringify(batch), {
        'x-forwarded-for': `198.51.${round}.7`,
        cookie: `_scr_v=${String(round).padStart(22, 'v')}`,
      });
    }
    for (let i = 0; i < 50; i += 1)
      await httpRequest(`${app.base}/track?u=https%3A%2F%2Fa.b%2F${i}`, {
        headers: { 'x-forwarded-for': `203.0.113.${i}` },
      });
    const after = await series();
    const shape = (lines: string[]) =>
      new Set(lines.filter((l) => !/_bucket\{/.test(l)).map((l) => l.replace(/ [^ ]+$/, '')));
    const added = [...shape(after)].filter((s) => !shape(before).has(s));
    t.same(
      added.filter((s) => !/route="(batch|e|track)"|reason="(prop|unknown_param)"/.test(s)),
      [],
      '10 000 distinct URLs, IPs and visitors added no series',
    );
    const labels = new Set(after.flatMap((l) => [...l.matchAll(/([a-z_]+)="/g)].map((m) => m[1])));
    labels.delete('le');
    t.same(
      [...labels]
        .sort()
        .filter((l) => !['code', 'reason', 'route', 'sink', 'tenant'].includes(l ?? '')),
      [],
      `label names: ${[...labels].join(', ')}`,
    );
    t.equal(await app.cli.stop('SIGTERM'), 0);
  },
);

t.test(
  'bare scratchd with no config file runs the built-in config under ./scratchd-data',
  {
    skip: existsSync('/etc/skroutz-infra/scratchd.json')
      ? '/etc/skroutz-infra/scratchd.json exists here'
      : false,
  },
  async (t) => {
    const dir = tempDir(t);
    const cli = spawnCli(
      t,
      ['scratchd', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
      { cwd: dir },
    );
    const line = await cli.waitForLine(/"msg":"listening"/);
    t.match(cli.output(), /"msg":"no config file, running on the built-in config"/);
    const { listen, config } = JSON.parse(line) as { listen: string; config: string };
    t.equal(config, '(built-in)');
    const res = await httpRequest(`http://${listen}/track?id=builtin-1`, {
      headers: { host: 'anything.example', 'user-agent': 'Mozilla/5.0' },
    });
    t.equal(res.status, 200);
    t.equal(await cli.stop('SIGTERM'), 0);
    const stored = archived(join(dir, 'scratchd-data', 'events', 'default'));
    t.same(
      stored.map((e) => [e.id, e.tenant]),
      [['builtin-1', 'default']],
    );
    t.notMatch(String(res.headers['set-cookie']), /Domain=/, 'no cookie domain');
  },
);
