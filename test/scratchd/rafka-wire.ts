// The rafka sink's wire contract (spec §2) checked against a real redis-server: the commands it
// sends (MONITOR sees every one), and that a plain Redis's `:0` to RPUSHX is never taken as an ack.
import { Redis } from 'ioredis';
import t from 'tap';
import { RafkaSink } from '../../src/scratchd/sinks/rafka.js';
import { eventually } from '../helpers/net.js';
import { tempDir } from './helpers/harness.js';
import { ownRedis } from './helpers/services.js';

t.test('only the contract commands are sent, and RPUSHX :0 is a failure', async (t) => {
  const dir = tempDir(t);
  const redis = await ownRedis(t, dir);
  // A plain Redis with rafka's stats hash in place, so the sink gets as far as RPUSHX.
  const seed = redis.client();
  await seed.hset(
    'stats',
    'producer.unflushed.messages',
    '0',
    'producer.delivery.errors',
    '0',
    'producer.unknown.events',
    '0',
  );
  const watcher = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true });
  const monitor = await watcher.monitor();
  t.teardown(() => {
    monitor.disconnect();
    watcher.disconnect();
  });
  const all: { args: string[]; source: string }[] = [];
  monitor.on('monitor', (_time: string, args: string[], source: string) =>
    all.push({ args, source }),
  );
  const sink = new RafkaSink('rafka', {
    type: 'rafka',
    url: redis.url,
    topic: 'analytics.{tenant}',
    key: 'visitor_id',
    dump_timeout_ms: 200,
    batch_events: 500,
    batch_bytes: 1_048_576,
    linger_ms: 50,
    unhealthy_after: 3,
    backoff_base_ms: 100,
    backoff_max_ms: 30_000,
    spool_max_mb: undefined,
  });
  t.teardown(() => sink.close());
  const event = (id: string, visitorId: string | null) => ({
    data: Buffer.from(`{"v":1,"id":"${id}"}`),
    meta: { id, tenant: 'gr', receivedAt: Date.now(), visitorId, sessionId: null },
  });
  await eventually(
    async () => {
      await sink.probe();
      return true;
    },
    5000,
    50,
  );
  await t.rejects(
    sink.write([event('a', 'v1'), event('b', null)]),
    /RPUSHX answered 0, not 1/,
    'a plain Redis never acks',
  );
  await eventually(() => all.some(({ args }) => args[0]?.toUpperCase() === 'RPUSHX'), 5000, 20);
  // Only the sink's own connection: the one that sent RPUSHX.
  const source = all.find(({ args }) => args[0]?.toUpperCase() === 'RPUSHX')?.source;
  const seen = all.filter((entry) => entry.source === source).map((entry) => entry.args);
  const names = seen.map((args) => (args[0] ?? '').toUpperCase());
  t.ok(names.includes('PING'), 'probe is PING');
  t.ok(names.includes('HGETALL'), 'stats are read first');
  const pushes = seen.filter((args) => args[0]?.toUpperCase() === 'RPUSHX').map((args) => args[1]);
  t.same(pushes, ['topics:analytics.gr:v1', 'topics:analytics.gr'], 'keyed and unkeyed topics');
  for (const banned of ['AUTH', 'SELECT', 'INFO', 'HELLO', 'CLIENT'])
    t.notOk(names.includes(banned), `never sends ${banned}`);
});
