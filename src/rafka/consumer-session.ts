/**
 * One connection's consumer (§3.7): the Kafka consumer, the offsets stored by `RPUSH acks`
 * (offset + 1, last write wins), their periodic commit, and the current assignment. Acks never
 * touch the library's own fetch position; this map is committed explicitly.
 */
import type { Logger } from '../common/logger.js';
import type { ConsumedMessage, KafkaConsumerPort, KafkaPort, TopicOffset } from './kafka-port.js';
import type { RafkaMetrics } from './metrics.js';

export type AckOutcome = 'stored' | 'discarded' | 'unknown_partition';

const key = (topic: string, partition: number): string => `${partition}\0${topic}`;

export class ConsumerSession {
  private readonly stored = new Map<string, TopicOffset>();
  private readonly dirty = new Set<string>();
  private assignment = new Map<string, Set<number>>();
  private commitTimer: NodeJS.Timeout | undefined;
  private committing: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  /** Set after a non-retriable failure; every BLPOP then replies `CONS Poll <text>`. */
  failure: string | undefined;

  constructor(
    readonly consumerId: string,
    readonly topics: readonly string[],
    private readonly consumer: KafkaConsumerPort,
    private readonly kafka: KafkaPort,
    private readonly autoCommit: boolean,
    commitIntervalMs: number,
    private readonly metrics: RafkaMetrics,
    private readonly log: Logger,
  ) {
    consumer.on('assigned', (assignment) => this.onAssigned(assignment));
    consumer.on('revoking', () => {
      this.metrics.rebalances.inc();
      return this.commit();
    });
    consumer.on('failed', (error, retriable) => {
      this.metrics.consumerFailures.inc({ retriable: String(retriable) });
      if (retriable) {
        this.log.warn('consumer failed, restarting', { err: error });
        return;
      }
      this.log.error('consumer failed', { err: error });
      this.failure = error.message;
    });
    if (autoCommit) {
      this.commitTimer = setInterval(() => void this.commit(), commitIntervalMs);
      this.commitTimer.unref();
    }
  }

  tryNext(): ConsumedMessage | undefined {
    return this.consumer.tryNext();
  }

  next(signal: AbortSignal): Promise<ConsumedMessage | undefined> {
    return this.consumer.next(signal);
  }

  /** Stores `position` for a partition; the caller already checked its sign. */
  ack(topic: string, partition: number, position: bigint): AckOutcome {
    const count = this.topics.includes(topic) ? this.kafka.partitionCount(topic) : undefined;
    if (count === undefined || partition < 0 || partition >= count) return 'unknown_partition';
    if (!this.assignment.get(topic)?.has(partition)) return 'discarded';
    const k = key(topic, partition);
    this.stored.set(k, { topic, partition, offset: position });
    this.dirty.add(k);
    return 'stored';
  }

  /** Commits the changed stored offsets; a failure is logged, counted and retried next time. */
  commit(): Promise<void> {
    if (!this.autoCommit || this.dirty.size === 0) return this.committing ?? Promise.resolve();
    if (this.committing) return this.committing;
    const keys = [...this.dirty];
    const offsets = keys.map((k) => this.stored.get(k) as TopicOffset);
    this.dirty.clear();
    this.committing = this.consumer
      .commit(offsets)
      .then(
        () => {
          this.metrics.commits.inc({ outcome: 'ok' });
        },
        (err: unknown) => {
          this.metrics.commits.inc({ outcome: 'error' });
          this.log.warn('commit failed', { err, partitions: offsets.length });
          for (const k of keys) if (this.stored.has(k)) this.dirty.add(k);
        },
      )
      .finally(() => {
        this.committing = undefined;
      });
    return this.committing;
  }

  /** Commits what is stored, then leaves the group. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.commitTimer);
      await this.commit();
      await this.consumer.close();
      this.setAssignment(new Map());
      this.log.info('consumer closed', { consumerId: this.consumerId });
    })();
    return this.closed;
  }

  private onAssigned(assignment: Map<string, number[]>): void {
    const next = new Map<string, Set<number>>();
    for (const [topic, partitions] of assignment) next.set(topic, new Set(partitions));
    // Stored offsets of partitions given up were committed on revoke or are redelivered.
    for (const [k, value] of this.stored) {
      if (!next.get(value.topic)?.has(value.partition)) {
        this.stored.delete(k);
        this.dirty.delete(k);
      }
    }
    this.setAssignment(next);
    this.log.info('partitions assigned', {
      consumerId: this.consumerId,
      assignment: Object.fromEntries([...assignment]),
    });
  }

  private setAssignment(next: Map<string, Set<number>>): void {
    const before = [...this.assignment.values()].reduce((n, s) => n + s.size, 0);
    const after = [...next.values()].reduce((n, s) => n + s.size, 0);
    this.metrics.consumerAssignedPartitions.inc(after - before);
    this.assignment = next;
  }
}
