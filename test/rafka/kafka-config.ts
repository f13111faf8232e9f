// The librdkafka-style config: shape, merge, validation texts and the mapping to typed config.
import t from 'tap';
import { consumerConfigFor, formatProblem, loadKafkaConfig } from '../../src/rafka/kafka-config.js';

/** The original rafka test config, unchanged. */
const ORIGINAL_TEST = {
  general: {
    'bootstrap.servers': 'localhost:9092',
    'session.timeout.ms': 2000,
    'heartbeat.interval.ms': 500,
    log_level: 0,
  },
  consumer: {
    'go.events.channel.enable': true,
    'go.application.rebalance.enable': false,
    'enable.auto.commit': true,
    'auto.commit.interval.ms': 1000,
    'enable.auto.offset.store': false,
    'auto.offset.reset': 'earliest',
  },
  producer: {
    'queue.buffering.max.ms': 0,
    'go.delivery.reports': true,
    'go.batch.producer': false,
  },
};

/** The original sample config, unchanged. */
const ORIGINAL_SAMPLE = {
  general: {
    'api.version.request': true,
    'bootstrap.servers': 'localhost:9092',
    'session.timeout.ms': 6000,
    'log.connection.close': false,
  },
  consumer: {
    'go.events.channel.enable': false,
    'go.application.rebalance.enable': false,
    'enable.auto.commit': true,
    'auto.commit.interval.ms': 10000,
    'enable.auto.offset.store': false,
    'auto.offset.reset': 'latest',
    'enable.partition.eof': false,
  },
  producer: { 'go.delivery.reports': true, 'go.events.channel.size': 1000 },
};

t.test('the original configs load', async (t) => {
  const test = loadKafkaConfig(ORIGINAL_TEST);
  t.same(test.problems, []);
  t.equal(test.config?.consumer.sessionTimeoutMs, 2000);
  t.equal(test.config?.consumer.fromBeginning, true);
  t.equal(test.config?.producer.lingerMs, 0);
  t.same(test.config?.producer.brokers, ['localhost:9092']);
  const sample = loadKafkaConfig(ORIGINAL_SAMPLE);
  t.same(sample.problems, []);
  t.equal(sample.config?.consumer.autoCommitIntervalMs, 10000);
  t.equal(sample.config?.consumer.fromBeginning, false);
});

t.test('defaults', async (t) => {
  const { config } = loadKafkaConfig({ general: { 'bootstrap.servers': 'k1,k2:9093' } });
  t.same(config?.producer.brokers, ['k1:9092', 'k2:9093']);
  t.equal(config?.producer.acks, -1);
  t.equal(config?.producer.lingerMs, 5);
  t.equal(config?.producer.partitioner, 'consistent_random');
  t.equal(config?.producer.allowAutoTopicCreation, true);
  t.equal(config?.consumer.allowAutoTopicCreation, false);
  t.same(config?.consumer.assignors, ['range', 'roundrobin']);
  t.equal(config?.consumer.sessionTimeoutMs, 10000);
});

const BAD: { name: string; input: unknown; lines: string[] }[] = [
  {
    name: 'unknown property',
    input: { general: { 'bootstrap.servers': 'k' }, consumer: { foo: 1 } },
    lines: ['config f.json: consumer: foo: unknown property'],
  },
  {
    name: 'wrong integer type',
    input: { general: { 'bootstrap.servers': 'k' }, consumer: { 'session.timeout.ms': true } },
    lines: ['config f.json: consumer: session.timeout.ms: expected integer'],
  },
  {
    name: 'wrong boolean',
    input: { general: { 'bootstrap.servers': 'k' }, consumer: { 'enable.auto.commit': 'yes' } },
    lines: ['config f.json: consumer: enable.auto.commit: expected boolean'],
  },
  {
    name: 'offset store cannot be enabled',
    input: {
      general: { 'bootstrap.servers': 'k' },
      consumer: { 'enable.auto.offset.store': true },
    },
    lines: ['config f.json: consumer: enable.auto.offset.store: unsupported value "true"'],
  },
  {
    name: 'unsupported codec',
    input: { general: { 'bootstrap.servers': 'k' }, producer: { 'compression.codec': 'snappy' } },
    lines: ['config f.json: producer: compression.codec: unsupported value "snappy"'],
  },
  {
    name: 'missing brokers',
    input: {},
    lines: [
      'config f.json: consumer: bootstrap.servers: required',
      'config f.json: producer: bootstrap.servers: required',
    ],
  },
  {
    name: 'unknown section',
    input: { general: { 'bootstrap.servers': 'k' }, topics: {} },
    lines: ['config f.json: topics: (section): unknown section'],
  },
  {
    name: 'nested value',
    input: { general: { 'bootstrap.servers': 'k', x: { y: 1 } } },
    lines: ['config f.json: general: x: expected a string, number or boolean'],
  },
];

for (const c of BAD) {
  t.test(`rejects: ${c.name}`, async (t) => {
    const { config, problems } = loadKafkaConfig(c.input);
    t.equal(config, undefined);
    t.same(
      problems.map((p) => formatProblem('f.json', p)),
      c.lines,
    );
  });
}

t.test('sections match case-insensitively; other-role properties are ignored', async (t) => {
  const { config, problems } = loadKafkaConfig({
    GENERAL: { 'bootstrap.servers': 'k' },
    Producer: { 'session.timeout.ms': 6000, 'linger.ms': '7' },
  });
  t.same(problems, []);
  t.equal(config?.producer.lingerMs, 7);
});

t.test('-b overrides the file', async (t) => {
  const { config } = loadKafkaConfig(
    { general: { 'metadata.broker.list': 'old:1' } },
    '127.0.0.1:9092',
  );
  t.same(config?.consumer.brokers, ['127.0.0.1:9092']);
  t.same(config?.producer.brokers, ['127.0.0.1:9092']);
});

t.test('per-consumer JSON is merged and checked by the same rules', async (t) => {
  const base = { 'bootstrap.servers': 'k', 'auto.offset.reset': 'earliest' };
  t.equal(consumerConfigFor(base, { 'auto.offset.reset': 'latest' }).config?.fromBeginning, false);
  t.equal(consumerConfigFor(base, null).config?.fromBeginning, true);
  t.equal(consumerConfigFor(base, {}).config?.fromBeginning, true);
  t.equal(
    consumerConfigFor(base, { 'session.timeout.ms': 12345, 'log.connection.close': false }).config
      ?.sessionTimeoutMs,
    12345,
  );
  t.same(consumerConfigFor(base, { foo: 'bar' }).problems, [
    { section: 'client', property: 'foo', reason: 'unknown property' },
  ]);
  t.same(consumerConfigFor(base, { 'session.timeout.ms': true }).problems, [
    { section: 'client', property: 'session.timeout.ms', reason: 'expected integer' },
  ]);
  t.equal(consumerConfigFor(base, { 'enable.auto.commit': false }).config?.autoCommit, false);
});
