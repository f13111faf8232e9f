// A consumer's stored offsets against a fake Kafka consumer: ack outcomes, commits of changed
// partitions only, retry after a failed commit, and commit-then-close.
import { Registry } from 'prom-client';
import t from 'tap';
import { silentLogger } from '../../src/common/logger.js';
import { ConsumerSession } from '../../src/rafka/consumer-session.js';
import type {
  ConsumerEvents,
  KafkaConsumerPort,
  KafkaPort,
  TopicOffset,
} from '../../src/rafka/kafka-port.js';
import { createRafkaMetrics } from '../../src/rafka/metrics.js';

class FakeConsumer implements KafkaConsumerPort {
  commits: TopicOffset[][] = [];
  failNext = false;
  closed = false;
  listeners: Partial<{ [E in keyof ConsumerEvents]: ConsumerEvents[E] }> = {};
  tryNext() {
    return undefined;
  }
  next() {
    return Promise.resolve(undefined);
  }
  commit(offsets: readonly TopicOffset[]): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('REBALANCE_IN_PROGRESS'));
    }
    this.commits.push([...offsets]);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  on<E extends keyof ConsumerEvents>(event: E, listener: ConsumerEvents[E]): void {
    (this.listeners as Record<string, unknown>)[event] = listener;
  }
}

const kafka = { partitionCount: (topic: string) => (topic === 't' ? 2 : undefined) } as KafkaPort;

function session(autoCommit = true) {
  const consumer = new FakeConsumer();
  const s = new ConsumerSession(
    'app:c|t',
    ['t'],
    consumer,
    kafka,
    autoCommit,
    60_000,
    createRafkaMetrics(new Registry()),
    silentLogger(),
  );
  consumer.listeners.assigned?.(new Map([['t', [0]]]));
  return { consumer, s };
}

t.test('ack outcomes', async (t) => {
  const { s } = session();
  t.equal(s.ack('t', 0, 5n), 'stored');
  t.equal(s.ack('t', 1, 5n), 'discarded', 'exists but not assigned');
  t.equal(s.ack('t', 2, 5n), 'unknown_partition');
  t.equal(s.ack('other', 0, 5n), 'unknown_partition', 'not subscribed');
});

t.test('commits changed partitions, last write wins, retried after a failure', async (t) => {
  const { consumer, s } = session();
  s.ack('t', 0, 5n);
  s.ack('t', 0, 3n);
  consumer.failNext = true;
  await s.commit();
  t.same(consumer.commits, [], 'the failed commit stored nothing');
  await s.commit();
  t.same(consumer.commits, [[{ topic: 't', partition: 0, offset: 3n }]]);
  await s.commit();
  t.equal(consumer.commits.length, 1, 'nothing changed, nothing committed');
});

t.test('close commits then closes; auto commit off stores but never commits', async (t) => {
  const { consumer, s } = session();
  s.ack('t', 0, 9n);
  await s.close();
  t.same(consumer.commits, [[{ topic: 't', partition: 0, offset: 9n }]]);
  t.ok(consumer.closed);
  const off = session(false);
  t.equal(off.s.ack('t', 0, 1n), 'stored');
  await off.s.close();
  t.same(off.consumer.commits, []);
});

t.test('a non-retriable failure makes BLPOP report it', async (t) => {
  const { consumer, s } = session();
  consumer.listeners.failed?.(new Error('boom'), false);
  t.equal(s.failure, 'boom');
});
