// rafka against the Ruby client's own wire behaviour (spec §7 environment and scenario 14): the
// script in ruby/ speaks as rafka-rb 0.5.0 on Debian's redis-rb 4.8 and reports what it saw.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { createTopics, readTopic, startRafka, testConfig } from '../helpers/rafka.js';
import { eventually } from '../helpers/net.js';
import { kafkaClient, uniqueId } from '../helpers/services.js';

const run = promisify(execFile);
const SCRIPT = join(import.meta.dirname, 'ruby', 'rafka_rb_flows.rb');

interface Failure {
  class: string;
  message: string;
}
interface Report {
  produced: number[];
  flush: number;
  produce_error: Failure | null;
  producer_quit: string;
  name: string;
  consumed: { topic: string; partition: number; offset: number; value: string }[];
  acks: number[];
  batch_acks: number[];
  timeouts_while_joining: number;
  idle: { reply: unknown; seconds: number };
  bad_ack: Failure | null;
  name_taken: Failure | null;
  stats: Record<string, string>;
  stats_integer_strings: boolean;
  stats_del: number;
  consumer_quit: string;
}

t.test('rafka-rb producer, consumer, batch consumer and stats flows (scenario 14)', async (t) => {
  // The file says `latest`; the consumer's own JSON says `earliest`, so consuming what was
  // produced before it joined shows the JSON took effect.
  const config = testConfig();
  config.consumer = { ...config.consumer, 'auto.offset.reset': 'latest' };
  const rafka = await startRafka(t, { config });
  const [topic] = await createTopics(t, 1, 2);
  const group = uniqueId('ruby');
  const count = 40;
  const { stdout, stderr } = await run(
    'ruby',
    [SCRIPT, '127.0.0.1', String(rafka.port), topic, group, String(count)],
    { timeout: 120_000 },
  ).catch((err: Error & { stderr?: string }) => {
    throw new Error(
      `the Ruby script failed (Debian's ruby and ruby-redis come from scripts/setup.sh): ` +
        `${err.message}\n${err.stderr ?? ''}`,
    );
  });
  t.equal(stderr, '', 'no warnings or errors from Ruby');
  const report = JSON.parse(stdout) as Report;

  t.same(report.produced, Array<number>(count).fill(1), 'every produce is :1 as an Integer');
  t.equal(report.flush, 0, 'flush (DUMP) parses to 0 unflushed');
  t.same(report.produce_error, {
    class: 'ProduceError',
    message: 'Local: Invalid argument or configuration',
  });
  t.equal(report.producer_quit, 'OK');
  const records = await readTopic(topic, count);
  t.equal(records.length, count, 'every produced message is in Kafka');
  for (const key of ['key-0', 'key-1', 'key-2']) {
    const partitions = new Set(records.filter((r) => r.key === key).map((r) => r.partition));
    t.equal(partitions.size, 1, `${key}: its messages share one partition`);
  }

  t.comment(`${report.timeouts_while_joining} BLPOP timeout(s) while the group formed`);
  t.equal(report.name, `${group}:ruby-1`, 'redis-rb named the connection on connect');
  t.equal(report.consumed.length, count, 'every message consumed once');
  t.same(
    report.consumed.map((m) => m.value).sort(),
    Array.from({ length: count }, (_v, i) => `ruby-${i}`).sort(),
  );
  t.ok(
    report.consumed.every((m) => m.topic === topic),
    'topic as a String',
  );
  for (const partition of [0, 1]) {
    const offsets = report.consumed.filter((m) => m.partition === partition).map((m) => m.offset);
    t.same(
      offsets,
      offsets.map((_o, i) => i),
      `partition ${partition}: Integer offsets from 0, in order`,
    );
  }
  t.ok(report.acks.length > 0 && report.acks.every((a) => a === 1), 'each ack is :1');
  t.ok(
    report.batch_acks.length > 0 && report.batch_acks.every((a) => a === 1),
    'each per-partition batch ack is :1',
  );
  t.equal(report.idle.reply, null, 'an idle BLPOP 0.3 gives nil');
  t.ok(
    report.idle.seconds >= 0.25 && report.idle.seconds < 2,
    `after ${report.idle.seconds.toFixed(3)} s`,
  );
  t.same(report.bad_ack, { class: 'ConsumeError', message: "Cannot parse ack: 'no-colons'" });
  t.same(report.name_taken, {
    class: 'ConsumeError',
    message: `id ${group}:ruby-1 is already taken`,
  });
  t.same(Object.keys(report.stats).sort(), [
    'producer.delivery.errors',
    'producer.unflushed.messages',
    'producer.unknown.events',
  ]);
  t.ok(report.stats_integer_strings, 'stats are a Hash of integer strings');
  t.equal(report.stats_del, 1);
  t.equal(report.consumer_quit, 'OK');

  // The acks were committed when the consumer quit: the group stands at the end of both
  // partitions.
  const admin = kafkaClient().admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const ends = new Map<number, string>();
  for (const p of await admin.fetchTopicOffsets(topic)) ends.set(p.partition, p.high);
  let last = '';
  await eventually(async () => {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    last = JSON.stringify(committed?.partitions);
    return (committed?.partitions ?? []).every((p) => p.offset === ends.get(p.partition));
  }).catch(() => t.fail(`committed ${last}, ends ${JSON.stringify([...ends])}`));
  t.pass('the group committed every acked offset');
});
