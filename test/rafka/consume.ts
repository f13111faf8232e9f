// Consuming through rafka from the real broker: round trip, groups splitting partitions and taking
// over, redelivery of unacked messages, batch timeouts, consumer config and ack errors (§7 9–11).
import t, { type Test } from 'tap';
import {
  RawClient,
  createTopics,
  encodeCommand,
  metricValue,
  produceDirect,
  scrape,
  startRafka,
  type Reply,
} from '../helpers/rafka.js';
import { uniqueId } from '../helpers/services.js';

const rafka = await startRafka(t);

async function consumer(t: Test, group: string, name = uniqueId('c')): Promise<RawClient> {
  const c = await RawClient.open(t, rafka.port);
  t.equal(await c.call('client', 'setname', `${group}:${name}`), 'OK');
  return c;
}

interface Message {
  topic: string;
  partition: number;
  offset: number;
  value: string | null;
}

function asMessage(reply: Reply): Message | undefined {
  if (reply === null) return undefined;
  if (reply instanceof Error) throw reply;
  if (!Array.isArray(reply) || reply.length !== 8) {
    throw new Error(`BLPOP reply is not 8 elements: ${JSON.stringify(reply)}`);
  }
  const r = reply as [string, string, string, number, string, number, string, string | null];
  return { topic: r[1], partition: r[3], offset: r[5], value: r[7] };
}

/** BLPOPs until `count` messages arrived or `deadlineMs` passed; acks each when `ack`. */
async function consumeN(
  c: RawClient,
  key: string,
  count: number,
  options: { ack?: boolean; deadlineMs?: number } = {},
): Promise<Message[]> {
  const out: Message[] = [];
  const deadline = Date.now() + (options.deadlineMs ?? 20_000);
  while (out.length < count && Date.now() < deadline) {
    const m = asMessage(await c.call('blpop', key, '1'));
    if (!m) continue;
    out.push(m);
    if (options.ack ?? true) {
      t.equal(await c.call('rpush', 'acks', `${m.topic}:${m.partition}:${m.offset}`), 1);
    }
  }
  return out;
}

t.test('the BLPOP reply is exactly 8 elements, byte for byte', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  await produceDirect(topic, [{ value: 'hello' }]);
  const c = await consumer(t, uniqueId('g'));
  let raw = '';
  const expected = `*8\r\n$5\r\ntopic\r\n$${topic.length}\r\n${topic}\r\n$9\r\npartition\r\n:0\r\n$6\r\noffset\r\n:0\r\n$5\r\nvalue\r\n$5\r\nhello\r\n`;
  for (let i = 0; i < 20 && raw !== expected; i++) {
    c.write(encodeCommand(['blpop', `topics:${topic}`, '1']));
    raw = await c.readBytes(5, 5000);
    if (raw === '*-1\r\n') continue;
    raw += await c.readBytes(expected.length - 5);
  }
  t.equal(raw, expected);
  t.equal(await c.call('rpush', 'acks', `${topic}:0:0`), 1);
  // An idle BLPOP with 0.3 s replies *-1 after about 0.3 s.
  const started = Date.now();
  t.equal(await c.call('blpop', `topics:${topic}`, '0.3'), null);
  const took = Date.now() - started;
  t.ok(took >= 290 && took < 700, `took ${took} ms`);
  t.equal(await c.call('quit'), 'OK');
  await c.waitClosed();
});

t.test('consume many on 4 partitions', async (t) => {
  const [topic] = (await createTopics(t, 1, 4)) as [string];
  const values = Array.from({ length: 40 }, (_v, i) => ({ value: `v${i}`, partition: i % 4 }));
  await produceDirect(topic, values);
  const group = uniqueId('g');
  const c = await consumer(t, group);
  const got = await consumeN(c, `topics:${topic}`, 40);
  t.same(
    got.map((m) => m.value).sort(),
    values.map((v) => v.value).sort(),
    'each message once',
    deliveries(got, group),
  );
});

/** What a failed exactly-once check shows: repeated messages and rafka's lines on the group. */
function deliveries(
  got: readonly Message[],
  group: string,
): { repeated: string[]; order: string[]; rafkaLog: string[] } {
  const seen = new Map<string, number>();
  for (const m of got) {
    const at = `${m.value}@${m.partition}:${m.offset}`;
    seen.set(at, (seen.get(at) ?? 0) + 1);
  }
  const repeated = [...seen].filter(([, n]) => n > 1).map(([at, n]) => `${at}×${n}`);
  const log = rafka.cli
    .output()
    .split('\n')
    .filter((line) => line.includes(group) && !line.includes('"level":"debug"'));
  return {
    repeated,
    order: got.map((m) => `${m.value}@${m.partition}:${m.offset}`),
    rafkaLog: log,
  };
}

t.test(
  'a group splits partitions, two groups each see everything, a close hands over',
  async (t) => {
    const [topic] = (await createTopics(t, 1, 4)) as [string];
    const group = uniqueId('split');
    const a = await consumer(t, group);
    const b = await consumer(t, group);
    const other = await consumer(t, uniqueId('other'));
    // Both join before any data: first BLPOPs register them.
    await Promise.all([a, b, other].map((c) => c.call('blpop', `topics:${topic}`, '0.5')));
    await new Promise((r) => setTimeout(r, 1500));
    const values = Array.from({ length: 40 }, (_v, i) => ({ value: `s${i}`, partition: i % 4 }));
    await produceDirect(topic, values);
    const [fromA, fromB, fromOther] = await Promise.all([
      consumeN(a, `topics:${topic}`, 20, { deadlineMs: 8000 }),
      consumeN(b, `topics:${topic}`, 20, { deadlineMs: 8000 }),
      consumeN(other, `topics:${topic}`, 40),
    ]);
    t.equal(fromA.length + fromB.length, 40, 'the group sees everything');
    t.ok(
      fromA.length > 0 && fromB.length > 0,
      `both members got messages (${fromA.length}/${fromB.length})`,
    );
    const partsA = new Set(fromA.map((m) => m.partition));
    t.notOk(
      fromB.some((m) => partsA.has(m.partition)),
      'no partition is shared',
    );
    t.equal(fromOther.length, 40, 'the other group sees everything');
    // A closes; B takes over A's partitions.
    await a.call('quit');
    await produceDirect(
      topic,
      [0, 1, 2, 3].map((p) => ({ value: `after-${p}`, partition: p })),
    );
    const taken = await consumeN(b, `topics:${topic}`, 4);
    t.same(new Set(taken.map((m) => m.partition)), new Set([0, 1, 2, 3]));
  },
);

t.test('unacked messages are re-read after a reconnect; acked ones are not', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const group = uniqueId('redeliver');
  await produceDirect(
    topic,
    Array.from({ length: 10 }, (_v, i) => ({ value: `r${i}` })),
  );
  const name = uniqueId('c');
  const first = await consumer(t, group, name);
  const acked = await consumeN(first, `topics:${topic}`, 5);
  t.same(
    acked.map((m) => m.offset),
    [0, 1, 2, 3, 4],
  );
  const unacked = await consumeN(first, `topics:${topic}`, 5, { ack: false });
  t.same(
    unacked.map((m) => m.offset),
    [5, 6, 7, 8, 9],
  );
  t.equal(await first.call('quit'), 'OK');
  const second = await consumer(t, group, name);
  const again = await consumeN(second, `topics:${topic}`, 5);
  t.same(
    again.map((m) => m.offset),
    [5, 6, 7, 8, 9],
    'resumes after the last ack',
  );
});

t.test('a rebalance that leaves a member its partitions hands nothing out again', async (t) => {
  // §3.7: handing out advances the position, so nothing returns within one consumer's life. A
  // second member subscribing to another topic makes the group rebalance while the first keeps
  // its partition; kafkajs alone would then fetch from the committed offset (nothing is acked
  // here) and hand out m0… again.
  const [topic, other] = (await createTopics(t, 2, 1)) as [string, string];
  const group = uniqueId('rejoin');
  await produceDirect(
    topic,
    Array.from({ length: 10 }, (_v, i) => ({ value: `m${i}` })),
  );
  const a = await consumer(t, group);
  const before = await consumeN(a, `topics:${topic}`, 5, { ack: false });
  t.same(
    before.map((m) => m.offset),
    [0, 1, 2, 3, 4],
  );
  const rebalances = async (): Promise<number> =>
    metricValue(await scrape(rafka.metricsPort), 'rafka_rebalances_total') ?? 0;
  const rebalancesBefore = await rebalances();
  const b = await consumer(t, group);
  await produceDirect(other, [{ value: 'for-b' }]);
  // b gets a partition only once the whole group synced, so a has joined again by then.
  const forB = await consumeN(b, `topics:${other}`, 1, { deadlineMs: 30_000 });
  t.same(
    forB.map((m) => m.value),
    ['for-b'],
  );
  t.ok((await rebalances()) > rebalancesBefore, 'the group rebalanced');
  const after = await consumeN(a, `topics:${topic}`, 5, { ack: false });
  t.same(
    after.map((m) => m.offset),
    [5, 6, 7, 8, 9],
    'a goes on where it was',
  );
  t.equal(await a.call('blpop', `topics:${topic}`, '1'), null, 'and nothing comes twice');
});

t.test('consumer config and registration errors', async (t) => {
  const [topic, other] = (await createTopics(t, 2, 1)) as [string, string];
  const c = await consumer(t, uniqueId('cfg'));
  const id = (await c.call('client', 'getname')) as string;
  for (const json of ['{"foo":"bar"}', '{"session.timeout.ms":true}']) {
    const reply = await c.call('blpop', `topics:${topic}:${json}`, '1');
    t.same(
      reply,
      new Error(`CONS Failed to register Consumer '${id}|${topic}' for Client '${id}'`),
      json,
    );
  }
  t.match(
    await c.call('blpop', `topics:${topic}:{nope`, '1'),
    new Error("CONS Error parsing configuration from '{nope'; "),
  );
  t.match(
    await c.call('blpop', `topics:bad/name`, '1'),
    new Error(`CONS Failed to register Consumer '${id}|bad/name' for Client '${id}'`),
  );
  t.equal(
    await c.call(
      'blpop',
      `topics:${topic}:{"session.timeout.ms":12345,"log.connection.close":false}`,
      '0.2',
    ),
    null,
  );
  t.equal(
    await c.call('blpop', `topics:${topic}:{"foo":"bar"}`, '0.2'),
    null,
    "a second BLPOP's JSON is ignored",
  );
  t.same(
    await c.call('blpop', `topics:${other}`, '1'),
    new Error(
      `CONS Client '${id}' has Consumer '${id}|${topic}' registered (new consID: '${id}|${other}')`,
    ),
  );
  const acks: [string, string][] = [
    [`${other}:0:1`, 'CONS Local: Unknown partition'],
    [`${topic}:9:1`, 'CONS Local: Unknown partition'],
    [`${topic}:0:-5`, 'CONS offset cannot be negative, got -4'],
    [`${topic}:x:1`, 'CONS strconv.ParseInt: parsing "x": invalid syntax'],
    [`${topic}:0:1.5`, 'CONS strconv.ParseInt: parsing "1.5": invalid syntax'],
  ];
  for (const [ack, text] of acks) t.same(await c.call('rpush', 'acks', ack), new Error(text), ack);
  t.equal(await c.call('rpush', 'acks', `${topic}:0:-1`), 1, '-1 stores position 0');
  const anon = await RawClient.open(t, rafka.port);
  const anonId = (await anon.call('client', 'getname')) as string;
  t.same(
    await anon.call('rpush', 'acks', `${topic}:0:1`),
    new Error(`CONS No consumer registered for Client ${anonId}`),
  );
});

t.test('auto.offset.reset latest skips old messages and gets new ones', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  await produceDirect(topic, [{ value: 'old' }]);
  const c = await consumer(t, uniqueId('latest'));
  const key = `topics:${topic}:{"auto.offset.reset":"latest"}`;
  // Wait until the consumer holds its partition, then produce.
  for (let i = 0; i < 10; i++) t.equal(await c.call('blpop', key, '0.3'), null);
  await produceDirect(topic, [{ value: 'new' }]);
  const [m] = await consumeN(c, key, 1);
  t.equal(m?.value, 'new');
});

t.test('a client that disconnects mid-BLPOP loses no message', async (t) => {
  const [topic] = (await createTopics(t, 1, 1)) as [string];
  const group = uniqueId('drop');
  const name = uniqueId('c');
  const a = await consumer(t, group, name);
  t.equal(await a.call('blpop', `topics:${topic}`, '0.5'), null);
  a.write(encodeCommand(['blpop', `topics:${topic}`, '5']));
  await new Promise((r) => setTimeout(r, 200));
  a.socket.destroy();
  await produceDirect(topic, [{ value: 'kept' }]);
  const b = await consumer(t, group, name);
  const [m] = await consumeN(b, `topics:${topic}`, 1);
  t.equal(m?.value, 'kept');
});

t.test('a consumer of a missing topic receives messages once the topic is created', async (t) => {
  const topic = uniqueId('later');
  const c = await consumer(t, uniqueId('missing'));
  const key = `topics:${topic}:{"topic.metadata.refresh.interval.ms":2000}`;
  t.equal(await c.call('blpop', key, '0.5'), null, 'a missing topic is not an error');
  const { createTopicsReady, kafkaClient } = await import('../helpers/services.js');
  const admin = kafkaClient().admin();
  await admin.connect();
  await createTopicsReady(admin, [{ topic, numPartitions: 1 }]);
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  const created = Date.now();
  await produceDirect(topic, [{ value: 'late' }]);
  const [m] = await consumeN(c, key, 1, { deadlineMs: 12_000 });
  t.equal(m?.value, 'late');
  t.ok(Date.now() - created < 10_000, `received ${Date.now() - created} ms after creation`);
});

t.test(
  'with one topic missing, the others are consumed and the missing one joins later',
  async (t) => {
    const [present] = (await createTopics(t, 1, 1)) as [string];
    const absent = uniqueId('absent');
    await produceDirect(present, [{ value: 'now' }]);
    const c = await consumer(t, uniqueId('partial'));
    const key = `topics:${present},${absent}:{"topic.metadata.refresh.interval.ms":1000}`;
    const [first] = await consumeN(c, key, 1);
    t.equal(first?.value, 'now', 'the existing topic is consumed');
    const { createTopicsReady, kafkaClient } = await import('../helpers/services.js');
    const admin = kafkaClient().admin();
    await admin.connect();
    await createTopicsReady(admin, [{ topic: absent, numPartitions: 1 }]);
    t.teardown(async () => {
      await admin.deleteTopics({ topics: [absent] }).catch(() => undefined);
      await admin.disconnect();
    });
    await produceDirect(absent, [{ value: 'later' }]);
    const later = await consumeN(c, key, 1, { deadlineMs: 15_000 });
    t.equal(later[0]?.value, 'later');
    t.equal(later[0]?.topic, absent);
  },
);
