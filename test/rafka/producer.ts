// The shared producer's accounting against a fake Kafka port: outstanding counts per connection,
// unknown-topic marks, buffer caps, retries until message.timeout.ms, and unflushed counting.
import { Registry } from 'prom-client';
import t from 'tap';
import { silentLogger } from '../../src/common/logger.js';
import { loadKafkaConfig } from '../../src/rafka/kafka-config.js';
import type { DeliveryResult, KafkaPort, ProduceRecord } from '../../src/rafka/kafka-port.js';
import { createRafkaMetrics, ProducerStats } from '../../src/rafka/metrics.js';
import { ProducerState, SharedProducer } from '../../src/rafka/producer.js';

class FakeKafka implements KafkaPort {
  topics = new Map<string, number>([['known', 4]]);
  cache = new Map<string, number>();
  sent: ProduceRecord[] = [];
  fail: DeliveryResult | undefined;
  reachable = true;
  async send(records: readonly ProduceRecord[]): Promise<DeliveryResult[]> {
    await Promise.resolve();
    if (this.fail) return records.map(() => this.fail as DeliveryResult);
    this.sent.push(...records);
    return records.map(() => ({ ok: true }));
  }
  partitionCount(topic: string): number | undefined {
    return this.cache.get(topic);
  }
  async refreshMetadata(topics: readonly string[]): Promise<Set<string>> {
    await Promise.resolve();
    if (!this.reachable) throw new Error('unreachable');
    this.cache = new Map(this.topics);
    return new Set(topics.filter((x) => this.topics.has(x)));
  }
  listTopics(): Promise<string[]> {
    return Promise.resolve([...this.topics.keys()]);
  }
  createConsumer(): never {
    throw new Error('not used');
  }
  disconnect(): Promise<void> {
    return Promise.resolve();
  }
}

function setup(producerOverrides: Record<string, unknown> = {}) {
  const { config } = loadKafkaConfig({
    general: { 'bootstrap.servers': 'k' },
    producer: { 'linger.ms': 0, 'retry.backoff.ms': 5, ...producerOverrides },
  });
  if (!config) throw new Error('bad test config');
  const kafka = new FakeKafka();
  const stats = new ProducerStats();
  const metrics = createRafkaMetrics(new Registry());
  const producer = new SharedProducer(kafka, config.producer, stats, metrics, silentLogger());
  t.teardown(() => producer.stop());
  return { kafka, stats, producer };
}

t.test('outstanding counts are per connection and resolve on delivery', async (t) => {
  const { kafka, producer } = setup();
  const a = new ProducerState(() => 'a');
  const b = new ProducerState(() => 'b');
  t.equal(producer.accept(a, 'known', Buffer.from('foo'), Buffer.from('1')), undefined);
  t.equal(producer.accept(a, 'known', null, Buffer.from('2')), undefined);
  t.equal(a.outstanding, 2);
  t.equal(b.outstanding, 0);
  t.equal(await a.waitIdle(1000), 0);
  t.equal(kafka.sent.length, 2);
  t.equal(kafka.sent[0]?.partition, 1, 'foo goes to partition 1 of 4');
});

t.test('a missing topic fails fast, marks only the failing connection', async (t) => {
  const { stats, producer } = setup();
  const a = new ProducerState(() => 'a');
  const b = new ProducerState(() => 'b');
  t.equal(producer.accept(a, 'missing', null, Buffer.from('x')), undefined);
  t.equal(await a.waitIdle(500), 0);
  t.equal(stats.deliveryErrors, 1);
  t.equal(producer.accept(a, 'missing', null, Buffer.from('x')), 'PROD Local: Unknown topic');
  t.equal(producer.accept(b, 'missing', null, Buffer.from('x')), undefined);
  t.equal(producer.accept(a, '', null, null), 'PROD Local: Invalid argument or configuration');
});

t.test('buffer caps and the size limit', async (t) => {
  const { producer } = setup({ 'queue.buffering.max.messages': 2, 'message.max.bytes': 10 });
  const a = new ProducerState(() => 'a');
  t.equal(
    producer.accept(a, 'known', Buffer.from('12345'), Buffer.from('123456')),
    'PROD Broker: Message size too large',
  );
  t.equal(producer.accept(a, 'known', null, Buffer.from('1')), undefined);
  t.equal(producer.accept(a, 'known', null, Buffer.from('2')), undefined);
  t.equal(producer.accept(a, 'known', null, Buffer.from('3')), 'PROD Local: Queue full');
  await a.waitIdle(1000);
  t.equal(
    producer.accept(a, 'known', null, Buffer.from('4')),
    undefined,
    'room again once resolved',
  );
});

t.test('retriable failures retry until message.timeout.ms, then count as timeouts', async (t) => {
  const { kafka, stats, producer } = setup({ 'message.timeout.ms': 150 });
  kafka.fail = { ok: false, kind: 'timeout', message: 'down', retriable: true };
  const a = new ProducerState(() => 'a');
  producer.accept(a, 'known', null, Buffer.from('x'));
  t.equal(await a.waitIdle(50), 1, 'still outstanding while retrying');
  t.equal(await a.waitIdle(2000), 0);
  t.equal(stats.deliveryErrors, 1);
  t.ok(stats.unknownEvents >= 1, 'producer-level errors are counted');
});

t.test('messages wait while Kafka is unreachable and are delivered once it is back', async (t) => {
  const { kafka, producer } = setup();
  kafka.reachable = false;
  const a = new ProducerState(() => 'a');
  producer.accept(a, 'known', null, Buffer.from('x'));
  t.equal(await a.waitIdle(100), 1);
  kafka.reachable = true;
  t.equal(await a.waitIdle(3000), 0);
  t.equal(kafka.sent.length, 1);
});

t.test('unflushed messages are counted once', async (t) => {
  const { kafka, stats, producer } = setup();
  kafka.reachable = false;
  const a = new ProducerState(() => 'a');
  producer.accept(a, 'known', null, Buffer.from('x'));
  producer.accept(a, 'known', null, Buffer.from('y'));
  t.equal(producer.countUnflushed(a), 2);
  t.equal(producer.countUnflushed(), 0, 'not counted twice');
  t.equal(stats.unflushedMessages, 2);
  t.equal(await producer.drain(50), 2);
});
