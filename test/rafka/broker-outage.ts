// A broker that stops answering while rafka produces and consumes: spec §7 8 (accounting with
// the broker paused), the SIGSTOPped half of 12, and §5's "Kafka unreachable … later". The broker
// is a private one, since the shared broker must never be paused or stopped.
import t, { type Test } from 'tap';
import { eventually } from '../helpers/net.js';
import { privateKafka, type TopicRecord } from '../helpers/private-kafka.js';
import { RawClient, startRafka, testConfig, type Reply } from '../helpers/rafka.js';
import { uniqueId } from '../helpers/services.js';

const kafka = await privateKafka(t);
t.comment(
  `private broker: format ${kafka.formatMs} ms, answered ${kafka.lastBootMs} ms after its start`,
);

async function named(t: Test, port: number, group = uniqueId('g')): Promise<RawClient> {
  const c = await RawClient.open(t, port);
  t.equal(await c.call('CLIENT', 'SETNAME', `${group}:${uniqueId('c')}`), 'OK');
  return c;
}

/** The value of an 8-element BLPOP reply, undefined on a timeout; errors throw. */
function valueOf(reply: Reply): { offset: number; value: string | null } | undefined {
  if (reply === null) return undefined;
  if (reply instanceof Error) throw reply;
  if (!Array.isArray(reply) || reply.length !== 8)
    throw new Error(`BLPOP reply is not 8 elements: ${JSON.stringify(reply)}`);
  return { offset: reply[5] as number, value: reply[7] as string | null };
}

/** A group member as an application runs one: it BLPOPs and acks. */
class Member {
  private constructor(
    private readonly t: Test,
    private readonly client: RawClient,
  ) {}

  static async join(t: Test, port: number): Promise<Member> {
    return new Member(t, await named(t, port, uniqueId('g')));
  }

  /** One BLPOP with timeout 1; undefined when it timed out. */
  async next(topic: string): Promise<{ offset: number; value: string | null } | undefined> {
    // §5: while Kafka is out of reach a BLPOP times out with *-1; a `CONS Poll` error (a crashed
    // consumer that was not started over) throws and fails the test.
    const reply = await this.client.call('BLPOP', `topics:${topic}`, '1');
    return valueOf(reply);
  }

  /** BLPOPs, acking each message, until `want` are all seen or the time is up. */
  async until(topic: string, want: readonly string[], timeoutMs: number): Promise<string[]> {
    return consumeUntil(this.t, () => this.next(topic), this.ack(topic), want, timeoutMs);
  }

  private ack(topic: string): (offset: number) => Promise<Reply> {
    return (offset) => this.client.call('RPUSH', 'acks', `${topic}:0:${offset}`);
  }
}

/** BLPOPs (acking each message) on a one-partition topic until `want` are all seen. */
async function consumeUntil(
  t: Test,
  next: () => Promise<{ offset: number; value: string | null } | undefined>,
  ack: (offset: number) => Promise<Reply>,
  want: readonly string[],
  timeoutMs: number,
): Promise<string[]> {
  const seen: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!want.every((v) => seen.includes(v))) {
    if (Date.now() > deadline)
      throw new Error(`consumed ${JSON.stringify(seen)}, wanted ${JSON.stringify(want)}`);
    const m = await next();
    if (m === undefined) continue;
    seen.push(m.value ?? '');
    t.equal(await ack(m.offset), 1);
  }
  return seen;
}

/** consumeUntil on one connection that must not fail. */
function consumeOn(
  t: Test,
  c: RawClient,
  topic: string,
  want: readonly string[],
  timeoutMs: number,
): Promise<string[]> {
  return consumeUntil(
    t,
    async () => valueOf(await c.call('BLPOP', `topics:${topic}`, '1')),
    (offset) => c.call('RPUSH', 'acks', `${topic}:0:${offset}`),
    want,
    timeoutMs,
  );
}

async function stats(c: RawClient): Promise<Record<string, string>> {
  const reply = (await c.call('HGETALL', 'stats')) as string[];
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < reply.length; i += 2) out[reply[i] ?? ''] = reply[i + 1] ?? '';
  return out;
}

const values = (records: readonly TopicRecord[]): Set<string | null> =>
  new Set(records.map((r) => r.value));

const containsAll =
  (want: readonly string[]) =>
  (records: readonly TopicRecord[]): boolean => {
    const got = values(records);
    return want.every((v) => got.has(v));
  };

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work;
  return { value, ms: performance.now() - started };
}

t.test(
  'broker paused (SIGSTOP): accounting, caps, and every accepted message after SIGCONT',
  async (t) => {
    const produced = uniqueId('paused');
    const consumed = uniqueId('paused-c');
    await kafka.createTopics([produced, consumed]);
    const config = testConfig();
    config.producer = { ...config.producer, 'queue.buffering.max.messages': 10 };
    const rafka = await startRafka(t, {
      config,
      brokers: kafka.brokers,
      args: ['--flush-timeout', '500'],
    });
    const a = await named(t, rafka.port);
    const b = await named(t, rafka.port);
    const consumer = await named(t, rafka.port);
    const watcher = await named(t, rafka.port);

    // Before the pause: B produces and flushes, and the consumer is assigned and reading.
    t.equal(await b.call('RPUSHX', `topics:${consumed}`, 'c0'), 1);
    t.equal(await b.call('DUMP', '10000'), 0, 'B flushed before the pause');
    t.same(await consumeOn(t, consumer, consumed, ['c0'], 30_000), ['c0']);

    kafka.pause();
    t.teardown(() => kafka.resume());
    const accepted: string[] = [];
    t.equal(await a.call('RPUSHX', `topics:${produced}`, 'a0'), 1, 'accepted while paused');
    accepted.push('a0');
    const dumpA = await timed(a.call('DUMP', '200'));
    t.equal(dumpA.value, 1, 'DUMP 200 on A reports its one outstanding message');
    t.ok(dumpA.ms >= 150, `A's DUMP waited its timeout (${dumpA.ms.toFixed(0)} ms)`);
    const dumpB = await timed(b.call('DUMP', '100'));
    t.equal(dumpB.value, 0, 'DUMP 100 on B, which flushed before the pause, is 0');
    const dumpB2 = await timed(b.call('DUMP', '10000'));
    t.equal(dumpB2.value, 0);
    t.ok(
      dumpB2.ms < 5000,
      `B's DUMP does not wait for the paused broker (${dumpB2.ms.toFixed(0)} ms)`,
    );

    // A connection that produces 3 and QUITs: the 500 ms close flush cannot finish.
    const quitter = await named(t, rafka.port);
    for (const v of ['q0', 'q1', 'q2']) {
      t.equal(await quitter.call('RPUSHX', `topics:${produced}`, v), 1);
      accepted.push(v);
    }
    t.equal(await quitter.call('QUIT'), 'OK');
    let unflushed = '';
    await eventually(async () => {
      unflushed = (await stats(watcher))['producer.unflushed.messages'] ?? '';
      return unflushed !== '0';
    }, 15_000);
    t.equal(unflushed, '3', 'producer.unflushed.messages counts the three');

    // Four are buffered; six more fill the cap of 10, and the 11th is refused.
    for (let i = 0; i < 6; i += 1) {
      t.equal(await b.call('RPUSHX', `topics:${produced}`, `b${i}`), 1);
      accepted.push(`b${i}`);
    }
    t.same(
      await b.call('RPUSHX', `topics:${produced}`, 'eleventh'),
      new Error('PROD Local: Queue full'),
      'the 11th RPUSHX finds the buffer full',
    );
    t.equal(await consumer.call('BLPOP', `topics:${consumed}`, '1'), null, 'BLPOP times out');

    kafka.resume();
    const records = await kafka.read(produced, containsAll(accepted), 60_000);
    t.same(
      [...values(records)].sort(),
      [...accepted].sort(),
      'after SIGCONT every accepted message is in Kafka, and nothing else',
    );
    t.equal(await a.call('DUMP', '30000'), 0, "A's message is delivered");
    // The consumer, registered before the pause, reads what is produced after it.
    t.equal(await b.call('RPUSHX', `topics:${consumed}`, 'c1'), 1);
    t.same(await consumeOn(t, consumer, consumed, ['c1'], 60_000), ['c1']);
    t.equal((await stats(watcher))['producer.unflushed.messages'], '3', 'counted once');
  },
);

t.test(
  'with the broker SIGSTOPped, SIGTERM exits 1 within T + 1 s and logs the leftovers',
  async (t) => {
    const topic = uniqueId('stopped');
    await kafka.createTopics([topic]);
    const rafka = await startRafka(t, {
      brokers: kafka.brokers,
      args: ['--shutdown-timeout', '2000'],
    });
    const c = await named(t, rafka.port);
    // The producer is connected and has delivered once before the broker stops answering.
    t.equal(await c.call('RPUSHX', `topics:${topic}`, 'before'), 1);
    t.equal(await c.call('DUMP', '10000'), 0);
    kafka.pause();
    t.teardown(() => kafka.resume());
    t.equal(await c.call('RPUSHX', `topics:${topic}`, 'a'), 1);
    t.equal(await c.call('RPUSHX', `topics:${topic}`, 'b'), 1);
    t.equal(await c.call('DUMP', '200'), 2, 'both outstanding while the broker is paused');
    const stop = await timed(rafka.cli.stop('SIGTERM', 15_000));
    kafka.resume();
    t.equal(stop.value, 1, 'exit 1 with messages left');
    t.ok(stop.ms < 3000, `exited in ${stop.ms.toFixed(0)} ms (T = 2000)`);
    t.match(rafka.cli.output(), /"unflushed":2/, 'the unflushed count is logged');
  },
);

t.test(
  'broker stopped and started: producing and consuming resume, nothing accepted is lost',
  async (t) => {
    const topic = uniqueId('restart');
    await kafka.createTopics([topic]);
    const rafka = await startRafka(t, { brokers: kafka.brokers });
    const producer = await named(t, rafka.port);
    const consumer = await Member.join(t, rafka.port);

    const before = Array.from({ length: 5 }, (_, i) => `p${i}`);
    for (const v of before) t.equal(await producer.call('RPUSHX', `topics:${topic}`, v), 1);
    t.equal(await producer.call('DUMP', '10000'), 0);
    await consumer.until(topic, before, 30_000);

    await kafka.stop();
    const during = Array.from({ length: 5 }, (_, i) => `o${i}`);
    for (const v of during)
      t.equal(await producer.call('RPUSHX', `topics:${topic}`, v), 1, `${v} accepted while down`);
    t.equal(await producer.call('DUMP', '300'), 5, 'DUMP reports the five waiting for Kafka');
    t.equal(await consumer.next(topic), undefined, 'BLPOP gives nothing while Kafka is down');
    // A consumer registered while Kafka is down starts anyway and waits.
    const late = await Member.join(t, rafka.port);
    t.equal(await late.next(topic), undefined, 'a new consumer waits too');

    await kafka.start();
    t.comment(`private broker answered ${kafka.lastBootMs} ms after its restart`);
    t.equal(await producer.call('DUMP', '60000'), 0, 'the buffered messages are delivered');
    const seen = await consumer.until(topic, during, 60_000);
    t.ok(
      during.every((v) => seen.includes(v)),
      `the consumer resumes and gets every new message (${JSON.stringify(seen)})`,
    );
    const all = [...before, ...during];
    const fromLate = await late.until(topic, all, 60_000);
    t.ok(
      all.every((v) => fromLate.includes(v)),
      'the consumer registered during the outage reads the whole topic',
    );
    t.equal((await stats(producer))['producer.delivery.errors'], '0', 'no delivery errors');
    t.equal(await rafka.cli.stop('SIGTERM', 15_000), 0, 'exit 0: nothing left behind');
  },
);
