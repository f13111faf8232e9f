/**
 * The shared producer (§3.8): every connection produces through one buffer and one Kafka
 * producer, while each connection keeps its own outstanding count (for DUMP and close
 * accounting) and its own unknown-topic marks. Accepted messages are never purged: each one
 * resolves as delivered or failed, or is still counted when the process gives up at shutdown.
 */
import type { Logger } from '../common/logger.js';
import type { ProducerConfig } from './kafka-config.js';
import type { DeliveryFailureKind, KafkaPort, ProduceRecord } from './kafka-port.js';
import type { ProducerStats, RafkaMetrics } from './metrics.js';
import { partitionerFor, type Partitioner } from './partitioner.js';

export const PROD_INVALID = 'PROD Local: Invalid argument or configuration';
export const PROD_TOO_LARGE = 'PROD Broker: Message size too large';
export const PROD_QUEUE_FULL = 'PROD Local: Queue full';
export const PROD_UNKNOWN_TOPIC = 'PROD Local: Unknown topic';

const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;
const MAX_RETRY_BACKOFF_MS = 1000;

/** One connection's view of the shared producer. It is not a Kafka producer. */
export class ProducerState {
  outstanding = 0;
  readonly unknownTopics = new Set<string>();
  private readonly idleWaiters = new Set<() => void>();

  constructor(readonly clientId: () => string) {}

  /** Resolves with the outstanding count once it is 0 or `timeoutMs` passed. */
  waitIdle(timeoutMs: number): Promise<number> {
    if (this.outstanding === 0 || timeoutMs <= 0) return Promise.resolve(this.outstanding);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve(this.outstanding);
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.idleWaiters.add(done);
    });
  }

  /** @internal called by the shared producer when one of this connection's messages resolves. */
  resolveOne(): void {
    this.outstanding -= 1;
    if (this.outstanding === 0) for (const waiter of [...this.idleWaiters]) waiter();
  }
}

interface Entry {
  owner: ProducerState;
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  bytes: number;
  acceptedAt: number;
  expiresAt: number;
  /** Already added to `producer.unflushed.messages`; never counted twice. */
  countedUnflushed: boolean;
}

export class SharedProducer {
  private queue: Entry[] = [];
  private readonly live = new Set<Entry>();
  private bufferedMessages = 0;
  private bufferedBytes = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryBackoffMs: number;
  private readonly partition: Partitioner;
  private readonly drainWaiters = new Set<() => void>();
  private lastErrorLogMs = 0;
  private suppressedErrors = 0;
  private sending = false;

  constructor(
    private readonly port: KafkaPort,
    private readonly config: ProducerConfig,
    private readonly stats: ProducerStats,
    private readonly metrics: RafkaMetrics,
    private readonly log: Logger,
  ) {
    this.partition = partitionerFor(config.partitioner);
    this.retryBackoffMs = config.retryBackoffMs;
    // Read at scrape time rather than set on every message.
    metrics.bufferSource.messages = () => this.bufferedMessages;
    metrics.bufferSource.bytes = () => this.bufferedBytes;
  }

  /** Messages accepted and not yet resolved, across all connections. */
  get buffered(): number {
    return this.bufferedMessages;
  }

  /** The synchronous RPUSHX checks, then buffering; returns an error text or undefined (`:1`). */
  accept(
    owner: ProducerState,
    topic: string,
    key: Buffer | null,
    value: Buffer | null,
  ): string | undefined {
    const bytes = (key?.length ?? 0) + (value?.length ?? 0);
    if (topic === '') return this.reject(PROD_INVALID, 'invalid');
    if (bytes > this.config.messageMaxBytes) return this.reject(PROD_TOO_LARGE, 'too_large');
    if (
      this.bufferedMessages + 1 > this.config.maxBufferedMessages ||
      this.bufferedBytes + bytes > this.config.maxBufferedBytes
    ) {
      return this.reject(PROD_QUEUE_FULL, 'queue_full');
    }
    if (owner.unknownTopics.has(topic)) {
      if (this.port.partitionCount(topic) === undefined) {
        return this.reject(PROD_UNKNOWN_TOPIC, 'unknown_topic');
      }
      owner.unknownTopics.delete(topic);
    }
    const now = Date.now();
    const entry: Entry = {
      owner,
      topic,
      key,
      value,
      bytes,
      acceptedAt: now,
      expiresAt: now + this.config.messageTimeoutMs,
      countedUnflushed: false,
    };
    this.queue.push(entry);
    this.live.add(entry);
    owner.outstanding += 1;
    this.bufferedMessages += 1;
    this.bufferedBytes += bytes;
    this.metrics.producerAccepted.inc();
    this.metrics.producerAcceptedBytes.inc(bytes);
    this.schedule();
    return undefined;
  }

  /** Sends the buffer now (DUMP, a closing connection, shutdown). */
  flushNow(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.sendQueued();
  }

  /**
   * Flushes and waits until every accepted message resolved or `timeoutMs` passed; returns the
   * rest.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.flushNow();
    if (this.bufferedMessages === 0) return 0;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.drainWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.drainWaiters.add(done);
    });
    return this.bufferedMessages;
  }

  /**
   * Adds the unresolved messages of `owner` (or of everyone) that were not counted yet to
   * `producer.unflushed.messages`; returns how many it added. They stay queued.
   */
  countUnflushed(owner?: ProducerState): number {
    let added = 0;
    for (const entry of this.live) {
      if (entry.countedUnflushed || (owner !== undefined && entry.owner !== owner)) continue;
      entry.countedUnflushed = true;
      added += 1;
    }
    this.stats.unflushedMessages += added;
    this.metrics.producerUnflushed.inc(added);
    return added;
  }

  /** Stops timers; messages still buffered stay counted. */
  stop(): void {
    clearTimeout(this.lingerTimer);
    clearTimeout(this.retryTimer);
  }

  private reject(
    text: string,
    reason: 'invalid' | 'too_large' | 'queue_full' | 'unknown_topic',
  ): string {
    this.metrics.producerRejected.inc({ reason });
    return text;
  }

  private schedule(): void {
    if (this.queue.length >= this.config.batchNumMessages) {
      this.flushNow();
      return;
    }
    if (this.lingerTimer || this.retryTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      this.sendQueued();
    }, this.config.lingerMs);
  }

  /**
   * Sends the queue one batch at a time: a batch waits for the previous one, so one connection's
   * messages to one partition keep their acceptance order, and the queue batches itself while a
   * send is in flight.
   */
  private sendQueued(): void {
    if (this.retryTimer || this.sending || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.config.batchNumMessages);
    this.sending = true;
    void this.sendBatch(batch)
      .catch((err: unknown) => {
        this.log.error('send failed unexpectedly, retrying', { err });
        this.retryLater(batch);
      })
      .finally(() => {
        this.sending = false;
        this.sendQueued();
      });
  }

  private async sendBatch(batch: Entry[]): Promise<void> {
    this.metrics.producerBatchMessages.observe(batch.length);
    const topics = [...new Set(batch.map((e) => e.topic))];
    const unknown = topics.filter(
      (t) => LEGAL_TOPIC.test(t) && this.port.partitionCount(t) === undefined,
    );
    if (unknown.length > 0) {
      try {
        await this.port.refreshMetadata(unknown);
      } catch (err) {
        this.noteProducerError(err);
        this.retryLater(batch);
        return;
      }
    }
    const sendable: Entry[] = [];
    const records: ProduceRecord[] = [];
    for (const entry of batch) {
      const count = LEGAL_TOPIC.test(entry.topic)
        ? this.port.partitionCount(entry.topic)
        : undefined;
      if (count === undefined || count === 0) {
        entry.owner.unknownTopics.add(entry.topic);
        this.fail(entry, 'unknown_topic', 'Broker: Unknown topic or partition');
        continue;
      }
      sendable.push(entry);
      records.push({
        topic: entry.topic,
        partition: this.partition(entry.key, count),
        key: entry.key,
        value: entry.value,
      });
    }
    if (records.length === 0) return;
    const results = await this.port.send(records);
    const retry: Entry[] = [];
    let retriableFailure: string | undefined;
    results.forEach((result, i) => {
      const entry = sendable[i];
      if (result.ok) return this.deliver(entry);
      if (result.retriable && Date.now() < entry.expiresAt) {
        retriableFailure = result.message;
        retry.push(entry);
        return;
      }
      if (result.kind === 'unknown_topic') entry.owner.unknownTopics.add(entry.topic);
      this.fail(entry, result.retriable ? 'timeout' : result.kind, result.message);
    });
    if (retriableFailure !== undefined) this.noteProducerError(new Error(retriableFailure));
    if (retry.length > 0) this.retryLater(retry);
    else this.retryBackoffMs = this.config.retryBackoffMs;
  }

  /** Puts messages back at the front after a transient failure; expired ones fail as timeouts. */
  private retryLater(entries: Entry[]): void {
    const now = Date.now();
    const live = entries.filter((entry) => {
      if (now < entry.expiresAt) return true;
      this.fail(entry, 'timeout', 'Local: Message timed out');
      return false;
    });
    this.queue.unshift(...live);
    if (this.retryTimer || this.queue.length === 0) return;
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    const delay = this.retryBackoffMs;
    this.retryBackoffMs = Math.min(this.retryBackoffMs * 2, MAX_RETRY_BACKOFF_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.expireQueued();
      this.sendQueued();
    }, delay);
  }

  private expireQueued(): void {
    const now = Date.now();
    this.queue = this.queue.filter((entry) => {
      if (now < entry.expiresAt) return true;
      this.fail(entry, 'timeout', 'Local: Message timed out');
      return false;
    });
  }

  private noteProducerError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (/ECONNRESET/.test(message)) return;
    this.stats.unknownEvents += 1;
    this.metrics.producerUnknownEvents.inc();
    this.log.warn('Kafka producer error, retrying', { error: message });
  }

  private deliver(entry: Entry): void {
    this.metrics.producerDelivered.inc({ topic: entry.topic });
    this.resolve(entry);
  }

  private fail(entry: Entry, kind: DeliveryFailureKind, message: string): void {
    this.stats.deliveryErrors += 1;
    this.metrics.producerDeliveryErrors.inc({ reason: kind });
    this.logDeliveryError(entry, kind, message);
    this.resolve(entry);
  }

  private logDeliveryError(entry: Entry, kind: DeliveryFailureKind, message: string): void {
    const now = Date.now();
    if (now - this.lastErrorLogMs < 1000) {
      this.suppressedErrors += 1;
      return;
    }
    this.log.error('delivery failed', {
      topic: entry.topic,
      reason: kind,
      error: message,
      bytes: entry.bytes,
      client: entry.owner.clientId(),
      suppressedSinceLast: this.suppressedErrors,
    });
    this.lastErrorLogMs = now;
    this.suppressedErrors = 0;
  }

  private resolve(entry: Entry): void {
    this.live.delete(entry);
    this.bufferedMessages -= 1;
    this.bufferedBytes -= entry.bytes;
    this.metrics.producerDeliverySeconds.observe((Date.now() - entry.acceptedAt) / 1000);
    entry.owner.resolveOne();
    if (this.bufferedMessages === 0) for (const waiter of [...this.drainWaiters]) waiter();
  }
}
