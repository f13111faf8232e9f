// Sink outages against a redis-server of our own: spec §7 A17, A18 and A20.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { eventually, freePort } from '../helpers/net.js';
import { archived, boot, httpRequest, metric, post, tempDir } from './helpers/harness.js';
import { ownRedis } from './helpers/services.js';

const FAST_RETRY = { unhealthy_after: 2, backoff_base_ms: 20, backoff_max_ms: 300, linger_ms: 5 };

async function readyz(admin: string): Promise<{
  status: number;
  body: {
    ready: boolean;
    sinks: Record<string, { state: string; spool_bytes: number; spool_full: boolean }>;
  };
}> {
  const res = await fetch(`${admin}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.json()) as never };
}

t.test(
  'A17 + A18: redis down under load: it spools, the file sink keeps going, all arrive after',
  async (t) => {
    const dir = tempDir(t);
    const redis = await ownRedis(t, dir);
    const app = await boot(
      t,
      {
        tenants: { gr: { hosts: ['*'], sinks: ['archive', 'redis'] } },
        sinks: {
          archive: { type: 'file', linger_ms: 5 },
          redis: {
            type: 'redis',
            url: redis.url,
            key: 'ev:{tenant}',
            command_timeout_ms: 500,
            ...FAST_RETRY,
          },
        },
      },
      { dir },
    );
    const ids: string[] = [];
    let n = 0;
    const send = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i += 1) {
        const id = `o-${n++}`;
        const res = await post(`${app.base}/e`, JSON.stringify({ id }));
        t.equal(res.status, 202, `answered ${id}`);
        ids.push(id);
      }
    };
    const latency = async (): Promise<number> => {
      const started = performance.now();
      await httpRequest(`${app.base}/track?id=lat-${n++}`);
      return performance.now() - started;
    };
    await send(20);
    await redis.stop();
    const duringStart = ids.length;
    const slow: number[] = [];
    for (let round = 0; round < 10; round += 1) {
      await send(10);
      slow.push(await latency());
      await new Promise((r) => setTimeout(r, 100));
    }
    await eventually(
      async () => (await readyz(app.admin)).body.sinks.redis?.state === 'unhealthy',
      10_000,
    );
    const during = await readyz(app.admin);
    t.equal(during.status, 200, '/readyz stays 200 while the spool has room');
    t.ok((during.body.sinks.redis?.spool_bytes ?? 0) > 0, 'the redis spool grows');
    t.equal(during.body.sinks.archive?.state, 'healthy');
    t.equal(await metric(app.admin, 'scratchd_sink_healthy', { sink: 'redis' }), 0);
    const archivedIds = new Set(archived(join(app.dataDir, 'events')).map((e) => e.id));
    t.ok(
      ids.slice(duringStart).every((id) => archivedIds.has(id)),
      'the file sink kept receiving during the outage',
    );
    t.ok(
      Math.max(...slow) < 500,
      `pixel latency stays low during the outage (max ${Math.max(...slow).toFixed(1)} ms)`,
    );
    await redis.start();
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
      30_000,
      200,
    );
    t.pass('every answered id reached redis after the outage');
    await eventually(
      async () => (await readyz(app.admin)).body.sinks.redis?.state === 'healthy',
      10_000,
    );
    await eventually(
      () =>
        readdirSync(join(app.dataDir, 'spool', 'redis')).filter((f) => f.endsWith('.seg'))
          .length === 0,
      10_000,
    );
    t.pass('replayed segments are deleted');
    t.ok((await metric(app.admin, 'scratchd_spool_replayed_total', { sink: 'redis' })) > 0);
    t.ok(
      (await metric(app.admin, 'scratchd_sink_write_errors_total', {
        sink: 'redis',
        reason: 'retryable',
      })) > 0,
    );
    const order = (await client.xrange('ev:gr', '-', '+'))
      .map(([, f]) => (JSON.parse(f[1] ?? '{}') as { id: string }).id)
      .filter((id) => id.startsWith('o-'));
    const firsts = order.filter((id, i) => order.indexOf(id) === i);
    t.same(firsts, ids, 'first deliveries are in accepted order');
    t.equal(await app.cli.stop('SIGTERM'), 0);
  },
);

t.test(
  'A20: a full spool: 503 for JSON, dropped for the pixel, /readyz 503; a second sink keeps it accepted',
  async (t) => {
    const deadPort = await freePort();
    const app = await boot(t, {
      tenants: {
        solo: { hosts: ['solo.test'], sinks: ['dead'] },
        duo: { hosts: ['duo.test'], sinks: ['dead', 'archive'] },
      },
      sinks: {
        dead: {
          type: 'redis',
          url: `redis://127.0.0.1:${deadPort}`,
          spool_max_mb: 0.002,
          command_timeout_ms: 200,
          ...FAST_RETRY,
          unhealthy_after: 1,
        },
        archive: { type: 'file', linger_ms: 5 },
      },
    });
    let status = 0;
    let retryAfter: unknown;
    for (let i = 0; i < 50 && status !== 503; i += 1) {
      const res = await post(
        `${app.base}/e`,
        JSON.stringify({ id: `full-${i}`, props: { pad: 'x'.repeat(200) } }),
        { host: 'solo.test' },
      );
      status = res.status;
      retryAfter = res.headers['retry-after'];
      if (status === 503) t.equal(res.json.error, 'overloaded');
    }
    t.equal(status, 503, 'JSON gets 503 once the only spool is full');
    t.equal(retryAfter, '5');
    const pixel = await httpRequest(`${app.base}/track?id=full-pixel`, {
      headers: { host: 'solo.test', 'user-agent': 'Mozilla/5.0' },
    });
    t.equal(pixel.status, 200);
    t.equal(pixel.body.length, 43);
    t.equal(pixel.headers['x-scratchd-status'], 'dropped; reason=spool_full');
    t.ok(
      (await metric(app.admin, 'scratchd_events_dropped_total', {
        tenant: 'solo',
        reason: 'spool_full',
      })) >= 1,
    );
    const ready = await readyz(app.admin);
    t.equal(ready.status, 503, '/readyz is 503 while a spool is full');
    t.equal(ready.body.sinks.dead?.spool_full, true);
    const before = await metric(app.admin, 'scratchd_sink_dropped_total', {
      sink: 'dead',
      reason: 'spool_full',
    });
    const duo = await post(`${app.base}/e`, JSON.stringify({ id: 'duo-1' }), { host: 'duo.test' });
    t.equal(duo.status, 202, 'accepted: the archive can take it');
    t.equal(
      await metric(app.admin, 'scratchd_sink_dropped_total', {
        sink: 'dead',
        reason: 'spool_full',
      }),
      before + 1,
    );
    await eventually(
      () => archived(join(app.dataDir, 'events')).some((e) => e.id === 'duo-1'),
      10_000,
    );
    t.equal(await app.cli.stop('SIGTERM'), 0);
  },
);
