// Producing through rafka into the real broker: key forms, placement, null values, unknown
// topics per connection, the shared producer, buffer caps, and a plain ioredis client (§7 5–8).
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { crc32 } from '../../src/rafka/partitioner.js';
import {
  RawClient,
  createTopics,
  encodeCommand,
  metricValue,
  readTopic,
  scrape,
  startRafka,
  testConfig,
  type Reply,
} from '../helpers/rafka.js';
import { uniqueId } from '../helpers/services.js';

const rafka = await startRafka(t);
const open = (tt: Test) => RawClient.open(tt, rafka.port);

t.test('produce forms land in Kafka with their keys; a null bulk is a null value', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const c = await open(t);
  const sends: [string, string | null][] = [
    [`topics:${topic}`, 'no-key'],
    [`topics:${topic}:k`, 'key-k'],
    [`topics:${topic}:a:b`, 'key-a:b'],
    [`topic:${topic}:bar`, 'prefix-not-checked'],
    [`topics:${topic}:`, 'empty-key'],
    [`topics:${topic}:nullvalue`, null],
  ];
  for (const [key, value] of sends) t.equal(await c.call('RPUSHX', key, value), 1, key);
  t.equal(await c.call('DUMP', '5000'), 0);
  const records = await readTopic(topic, sends.length);
  const seen = records.map((r) => [r.key, r.value]);
  t.same(seen, [
    [null, 'no-key'],
    ['k', 'key-k'],
    ['a:b', 'key-a:b'],
    ['bar', 'prefix-not-checked'],
    ['', 'empty-key'],
    ['nullvalue', null],
  ]);
});

t.test('keyed messages land on the CRC-32 partition; one key keeps one partition', async (t) => {
  const [topic] = (await createTopics(t, 1, 4)) as [string];
  const c = await open(t);
  const keys = Array.from({ length: 50 }, (_v, i) => `key-${i}`);
  for (const key of keys) await c.call('RPUSHX', `topics:${topic}:${key}`, key);
  for (let i = 0; i < 100; i++) await c.call('RPUSHX', `topics:${topic}:foo`, `foo-${i}`);
  t.equal(await c.call('DUMP', '5000'), 0);
  const records = await readTopic(topic, 150);
  t.equal(records.length, 150);
  for (const r of records) {
    const want = crc32(Buffer.from(r.key ?? '', 'latin1')) % 4;
    if (r.partition !== want) t.fail(`key ${r.key} on ${r.partition}, want ${want}`);
  }
  const foo = new Set(records.filter((r) => r.key === 'foo').map((r) => r.partition));
  t.same([...foo], [1], 'foo always on partition 1');
});

t.test(
  'a missing topic: :1 then a delivery error, then a sync error on that connection only',
  async (t) => {
    const missing = uniqueId('idontexist');
    const a = await open(t);
    const b = await open(t);
    t.equal(await a.call('DEL', 'stats'), 1);
    const started = Date.now();
    t.equal(await a.call('RPUSHX', `topics:${missing}`, 'x'), 1);
    t.equal(await a.call('DUMP', '5000'), 0);
    t.ok(Date.now() - started < 500, `the failure resolved in ${Date.now() - started} ms`);
    const stats = (await a.call('HGETALL', 'stats')) as string[];
    t.equal(stats[3], '1', 'producer.delivery.errors is exactly 1');
    t.same(
      await a.call('RPUSHX', `topics:${missing}`, 'x'),
      new Error('PROD Local: Unknown topic'),
    );
    t.equal(
      await b.call('RPUSHX', `topics:${missing}`, 'x'),
      1,
      'another connection still gets :1',
    );
    t.equal(await b.call('DUMP', '5000'), 0);
  },
);

t.test('200 connections share one Kafka producer', async (t) => {
  const [topic] = (await createTopics(t, 1, 2)) as [string];
  const clients = await Promise.all(Array.from({ length: 200 }, () => open(t)));
  const dumps = await Promise.all(
    clients.map(async (c, i) => {
      for (let j = 0; j < 10; j++)
        c.write(encodeCommand(['RPUSHX', `topics:${topic}`, `${i}-${j}`]));
      c.write(encodeCommand(['DUMP', '10000']));
      for (let j = 0; j < 10; j++) await c.read();
      return c.read();
    }),
  );
  t.same(new Set(dumps), new Set([0]), 'every DUMP replies :0');
  const records = await readTopic(topic, 2000);
  t.equal(records.length, 2000);
  const metrics = await scrape(rafka.metricsPort);
  t.equal(metricValue(metrics, 'rafka_kafka_clients', 'role="producer"'), 1);
  for (const c of clients) c.socket.destroy();
});

t.test('a plain ioredis client produces (as scratchd does)', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const redis = new Redis({
    host: '127.0.0.1',
    port: rafka.port,
    enableReadyCheck: false,
    // ioredis 6 opens with HELLO 3 by default, which rafka (like the original) does not support.
    protocol: 2,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
  });
  t.teardown(() => redis.disconnect());
  await redis.connect();
  t.equal(await redis.rpushx(`topics:${topic}`, 'from-ioredis'), 1);
  t.equal(await redis.call('RPUSHX', `topics:${topic}:k1`, Buffer.from([0, 1, 2])), 1);
  t.equal(await redis.call('DUMP', '5000'), 0);
  t.equal(await redis.ping(), 'PONG');
  const records = await readTopic(topic, 2);
  t.same(
    records.map((r) => r.value),
    ['from-ioredis', '\u0000\u0001\u0002'],
  );
});

t.test('buffer caps and the size limit reply synchronously', async (t) => {
  const config = testConfig();
  config.producer = {
    ...config.producer,
    'queue.buffering.max.messages': 10,
    'message.max.bytes': 1000,
    'queue.buffering.max.ms': 1000,
  };
  const small = await startRafka(t, { config });
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const c = await RawClient.open(t, small.port);
  t.same(
    await c.call('RPUSHX', `topics:${topic}`, 'x'.repeat(1001)),
    new Error('PROD Broker: Message size too large'),
  );
  for (let i = 0; i < 10; i++) t.equal(await c.call('RPUSHX', `topics:${topic}`, `m${i}`), 1);
  t.same(
    await c.call('RPUSHX', `topics:${topic}`, 'eleventh'),
    new Error('PROD Local: Queue full'),
  );
  t.equal(await c.call('DUMP', '5000'), 0);
  const records = await readTopic(topic, 10);
  t.equal(records.length, 10);
});

t.test('a connection that closes with messages outstanding counts them as unflushed', async (t) => {
  // The broker is shared, so it cannot be paused here; a 1 ms flush timeout is shorter than any
  // metadata fetch plus produce round trip, so the close accounting gives up first.
  const config = testConfig();
  config.producer = { ...config.producer, 'queue.buffering.max.ms': 2000 };
  const slow = await startRafka(t, { config, args: ['--flush-timeout', '1'] });
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const c = await RawClient.open(t, slow.port);
  for (let i = 0; i < 3; i++) await c.call('RPUSHX', `topics:${topic}`, `q${i}`);
  await c.call('QUIT');
  const probe = await RawClient.open(t, slow.port);
  let stats: string[] = [];
  for (let i = 0; i < 50; i++) {
    stats = (await probe.call('HGETALL', 'stats')) as string[];
    if (stats[1] !== '0') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(stats[1], '3', 'producer.unflushed.messages counts the three');
  // Not purged: everything is still delivered.
  const records = await readTopic(topic, 3);
  t.equal(records.length, 3);
});

t.test('a batch of thousands keeps each partition in order, every message once', async (t) => {
  // rafka hands kafkajs a large batch in chunks per partition (kafkajs's own grouping costs time
  // quadratic in a send's size); a long linger makes the 3,000 pipelined messages one batch.
  const config = testConfig();
  config.producer = { ...config.producer, 'queue.buffering.max.ms': 500 };
  const lingering = await startRafka(t, { config });
  const [topic] = (await createTopics(t, 1, 2)) as [string];
  const keyFor = (partition: number): string => {
    for (let i = 0; ; i++) if (crc32(Buffer.from(`k${i}`)) % 2 === partition) return `k${i}`;
  };
  const keys = [keyFor(0), keyFor(1)];
  const c = await RawClient.open(t, lingering.port);
  const total = 3000;
  for (let i = 0; i < total; i++)
    c.write(encodeCommand(['RPUSHX', `topics:${topic}:${keys[i % 2]}`, `${i % 2}-${i}`]));
  c.write(encodeCommand(['DUMP', '20000']));
  const replies: Reply[] = [];
  for (let i = 0; i < total; i++) replies.push(await c.read());
  t.equal(replies.filter((r) => r === 1).length, total, 'every RPUSHX got :1');
  t.equal(await c.read(), 0, 'DUMP: nothing outstanding');
  const metrics = await scrape(lingering.metricsPort);
  const sends = metricValue(metrics, 'rafka_producer_batch_messages_count') ?? 0;
  const small = metricValue(metrics, 'rafka_producer_batch_messages_bucket', 'le="1000"') ?? 0;
  t.ok(sends > small, `a batch held over 1,000 messages (${sends} batches, ${small} small)`);
  const records = await readTopic(topic, total);
  t.equal(records.length, total);
  for (const partition of [0, 1]) {
    const mine = records
      .filter((r) => r.partition === partition)
      .sort((a, b) => Number(a.offset) - Number(b.offset))
      .map((r) => Number(r.value?.split('-')[1]));
    const expected = Array.from({ length: total / 2 }, (_v, i) => 2 * i + partition);
    t.same(mine, expected, `partition ${partition} holds its messages once, in order`);
  }
});
