/**
 * The kafkajs implementation of the Kafka boundary (§3.9), and the only module that imports
 * kafkajs apart from the assignors. One producer and one admin client serve the whole process;
 * each rafka consumer gets its own kafkajs consumer. Clients connect in the background and retry,
 * so an unreachable Kafka never blocks the start.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CompressionTypes,
  Kafka,
  logLevel as KafkaLogLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type LogEntry,
  type Producer,
} from 'kafkajs';
import type { Logger } from '../common/logger.js';
import { kafkajsAssigner } from './assignors.js';
import type { CommonKafkaConfig, ProducerConfig } from './kafka-config.js';
import type {
  ConsumedMessage,
  ConsumerEvents,
  ConsumerSpec,
  DeliveryResult,
  KafkaConsumerPort,
  KafkaPort,
  ProduceRecord,
  TopicOffset,
} from './kafka-port.js';
import type { RafkaMetrics } from './metrics.js';

const MAX_RECONNECT_MS = 5000;
const METADATA_TIMEOUT_MS = 5000;
/**
 * The most messages in one kafkajs send (see `send`). kafkajs's grouping costs, per message,
 * 0.5 µs plus a part that grows with the send's size: 0.8 µs at 500, 1.5 µs at 1,000 and
 * 10 µs at 10,000 messages (measured on its groupMessagesPerPartition alone). Each send is one
 * produce request, so a full 10,000-message batch to one partition goes in 20.
 */
const SEND_CHUNK = 500;

function kafkajsLevel(level: number): KafkaLogLevel {
  if (level <= 3) return KafkaLogLevel.ERROR;
  if (level === 4) return KafkaLogLevel.WARN;
  if (level <= 6) return KafkaLogLevel.INFO;
  return KafkaLogLevel.DEBUG;
}

function kafkaFor(
  config: CommonKafkaConfig,
  clientId: string,
  log: Logger,
  retries?: number,
): Kafka {
  const kafkaLog = log.child({ component: 'kafka' });
  return new Kafka({
    clientId,
    brokers: config.brokers,
    connectionTimeout: config.connectionTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    retry: { initialRetryTime: config.retryBackoffMs, retries: retries ?? 5 },
    logLevel: kafkajsLevel(config.logLevel),
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...fields } = entry;
        if (level <= KafkaLogLevel.ERROR) kafkaLog.error(message, fields);
        else if (level === KafkaLogLevel.WARN) kafkaLog.warn(message, fields);
        else if (level === KafkaLogLevel.INFO) kafkaLog.info(message, fields);
        else kafkaLog.debug(message, fields);
      },
  });
}

function withTimeout<T>(work: Promise<T>, ms: number, text: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(text)), ms);
    work.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

interface KafkaJsError extends Error {
  type?: string;
  retriable?: boolean;
  cause?: unknown;
}

/** Classifies a failed send into the neutral result. */
export function classifySendError(err: unknown): DeliveryResult {
  const error = err as KafkaJsError;
  const message = error.message || String(err);
  let inner: KafkaJsError | undefined = error;
  for (let depth = 0; inner && depth < 4; depth++) {
    if (inner.type === 'UNKNOWN_TOPIC_OR_PARTITION') {
      return { ok: false, kind: 'unknown_topic', message, retriable: false };
    }
    if (inner.type === 'MESSAGE_TOO_LARGE' || inner.type === 'INVALID_TOPIC_EXCEPTION') {
      return { ok: false, kind: 'broker', message, retriable: false };
    }
    inner = inner.cause as KafkaJsError | undefined;
  }
  const retriable =
    error.retriable !== false ||
    /disconnected|ECONNREFUSED|Connection|timed out|retries/i.test(message);
  return { ok: false, kind: retriable ? 'timeout' : 'broker', message, retriable };
}

/** kafkajs errors that mean "Kafka cannot be reached now", whatever kafkajs calls retriable. */
const UNREACHABLE_ERRORS = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSNumberOfRetriesExceeded',
]);

/**
 * Whether a consumer crash is Kafka being out of reach (§5: BLPOP answers `*-1` meanwhile and the
 * consumer retries) rather than a failure the client must see. Looks through the causes.
 */
export function isUnreachableCrash(err: unknown): boolean {
  let inner = err as KafkaJsError | undefined;
  for (let depth = 0; inner && depth < 4; depth++) {
    if (UNREACHABLE_ERRORS.has(inner.name)) return true;
    inner = inner.cause as KafkaJsError | undefined;
  }
  return false;
}

export class KafkajsPort implements KafkaPort {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private producerConnected = false;
  private adminConnected = false;
  private closed = false;
  private readonly partitions = new Map<string, number>();
  private readonly stopSignal = new AbortController();

  constructor(
    private readonly config: ProducerConfig,
    private readonly log: Logger,
    private readonly metrics: RafkaMetrics,
  ) {
    this.kafka = kafkaFor(config, config.clientId, log, config.retries);
    // Known gap: kafkajs retries a produce request per broker, not per partition, so when one
    // partition fails (NOT_LEADER_OR_FOLLOWER after a leader move or on a brand-new topic) the
    // other partitions of that request are written again. librdkafka retries only the failed
    // partition. Still at-least-once; `enable.idempotence` lets the broker drop the copies.
    this.producer = this.kafka.producer({
      allowAutoTopicCreation: config.allowAutoTopicCreation,
      idempotent: config.idempotent,
      maxInFlightRequests: config.maxInFlightRequests,
      metadataMaxAge: config.metadataMaxAgeMs,
      retry: { initialRetryTime: config.retryBackoffMs, retries: config.retries },
      // rafka picks every record's partition itself (§3.8); this only silences kafkajs's warning.
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.admin = this.kafka.admin({
      retry: { retries: 1, initialRetryTime: config.retryBackoffMs },
    });
    this.producer.on(this.producer.events.DISCONNECT, () => {
      if (this.closed) return;
      this.producerConnected = false;
      this.metrics.kafkaClients.set({ role: 'producer' }, 0);
      this.log.warn('Kafka producer disconnected, reconnecting');
      void this.keepConnected('producer');
    });
    void this.keepConnected('producer');
    void this.keepConnected('admin');
  }

  private async keepConnected(role: 'producer' | 'admin'): Promise<void> {
    let backoff = this.config.retryBackoffMs;
    while (!this.closed) {
      try {
        if (role === 'producer') await this.producer.connect();
        else await this.admin.connect();
        if (this.closed) return;
        if (role === 'producer') this.producerConnected = true;
        else this.adminConnected = true;
        this.metrics.kafkaClients.set({ role }, 1);
        this.log.info('Kafka client connected', { role });
        return;
      } catch (err) {
        this.log.warn('Kafka client cannot connect, retrying', { role, err, retryInMs: backoff });
        await sleep(backoff, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
        backoff = Math.min(backoff * 2, MAX_RECONNECT_MS);
      }
    }
  }

  async send(records: readonly ProduceRecord[]): Promise<DeliveryResult[]> {
    const results: DeliveryResult[] = new Array<DeliveryResult>(records.length);
    if (!this.producerConnected) {
      const failure: DeliveryResult = {
        ok: false,
        kind: 'timeout',
        message: 'Local: Broker transport failure (producer not connected)',
        retriable: true,
      };
      return results.fill(failure);
    }
    // One send per partition and at most SEND_CHUNK messages each: kafkajs groups a send's
    // messages per partition by copying the partition's list for every message. A partition's
    // chunks go one after another, which keeps their order even across retries and keeps an
    // idempotent producer's sequence numbers in step (kafkajs assigns them per send and would
    // race two concurrent sends to one partition); partitions go at once. Sending a partition's
    // chunks at once measured faster in bench/rafka (0.67 → 0.81–0.87 of the kafkajs baseline),
    // but the chunks did not land in call order: the order test in test/rafka/produce.ts failed
    // in each of three runs.
    const byPartition = new Map<string, number[]>();
    records.forEach((record, i) => {
      const key = `${record.partition}\0${record.topic}`;
      const list = byPartition.get(key);
      if (list === undefined) byPartition.set(key, [i]);
      else list.push(i);
    });
    await Promise.all(
      [...byPartition.values()].map(async (indexes) => {
        for (let from = 0; from < indexes.length; from += SEND_CHUNK) {
          const chunk = indexes.slice(from, from + SEND_CHUNK);
          const result = await this.sendChunk(records, chunk);
          for (const i of chunk) results[i] = result;
        }
      }),
    );
    return results;
  }

  /** One kafkajs send of `records[i]` for each `i` in `indexes`, all of one partition. */
  private async sendChunk(
    records: readonly ProduceRecord[],
    indexes: readonly number[],
  ): Promise<DeliveryResult> {
    try {
      await this.producer.send({
        topic: records[indexes[0]].topic,
        acks: this.config.acks,
        timeout: this.config.sendTimeoutMs,
        compression:
          this.config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        messages: indexes.map((i) => {
          const r = records[i];
          return { partition: r.partition, key: r.key, value: r.value };
        }),
      });
      return { ok: true };
    } catch (err) {
      return classifySendError(err);
    }
  }

  partitionCount(topic: string): number | undefined {
    return this.partitions.get(topic);
  }

  async refreshMetadata(topics: readonly string[]): Promise<Set<string>> {
    if (!this.adminConnected)
      throw new Error('Local: Broker transport failure (admin not connected)');
    const { topics: all } = await withTimeout(
      this.admin.fetchTopicMetadata({ topics: [] }),
      METADATA_TIMEOUT_MS,
      'Local: Timed out',
    );
    this.partitions.clear();
    for (const t of all) this.partitions.set(t.name, t.partitions.length);
    return new Set(topics.filter((t) => this.partitions.has(t)));
  }

  async listTopics(timeoutMs: number): Promise<string[]> {
    if (!this.adminConnected) {
      await sleep(timeoutMs);
      throw new Error('Local: Timed out');
    }
    await withTimeout(this.refreshMetadata([]), timeoutMs, 'Local: Timed out');
    return [...this.partitions.keys()];
  }

  createConsumer(spec: ConsumerSpec): KafkaConsumerPort {
    return new KafkajsConsumer(spec, this, this.log, this.metrics);
  }

  async disconnect(): Promise<void> {
    this.closed = true;
    this.stopSignal.abort();
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect()]);
    this.metrics.kafkaClients.set({ role: 'producer' }, 0);
    this.metrics.kafkaClients.set({ role: 'admin' }, 0);
  }
}

/** The last offset handed out on one partition, as kafkajs spells offsets. */
interface HandedOut {
  topic: string;
  partition: number;
  offset: string;
}

/** The rest of one fetched batch, handed out to BLPOPs one message at a time. */
interface Offer {
  payload: EachBatchPayload;
  /** The next message to hand out. */
  index: number;
  /** Where this batch's partition records what it handed out. */
  position: HandedOut;
  /** Ends the offer (and the batch): every message was handed out, or the batch must stop. */
  settle: () => void;
}

function isRebalanceError(err: unknown): boolean {
  const type = (err as KafkaJsError).type;
  return (
    type === 'REBALANCE_IN_PROGRESS' ||
    type === 'NOT_COORDINATOR_FOR_GROUP' ||
    type === 'ILLEGAL_GENERATION' ||
    type === 'UNKNOWN_MEMBER_ID'
  );
}

/**
 * One kafkajs consumer whose `eachBatch` hands messages out one at a time to BLPOPs. While a
 * message waits for a BLPOP the handler keeps heartbeating, so an idle client stays a member.
 * The resolved offset (kafkajs's fetch position) advances when a message is handed out; acks are
 * committed separately from the caller's own stored-offset map.
 */
class KafkajsConsumer implements KafkaConsumerPort {
  private readonly consumer: Consumer;
  private offer: Offer | undefined;
  private waiter: ((message: ConsumedMessage | undefined) => void) | undefined;
  private closing = false;
  private running = false;
  /** True while the consumer stops to change its subscription; batches end at once. */
  private restarting = false;
  /** Whether this consumer is counted in `rafka_kafka_clients{role="consumer"}`. */
  private counted = false;
  private readonly listeners: { [E in keyof ConsumerEvents]: ConsumerEvents[E][] } = {
    assigned: [],
    revoking: [],
    failed: [],
  };
  private readonly stop = new AbortController();
  private readonly log: Logger;
  /** Bumped when a crashed consumer starts over; an older start loop then gives up. */
  private generation = 0;
  /**
   * The last offset handed out per partition (key `partition\0topic`), for as long as this
   * consumer keeps the partition. kafkajs forgets its fetch position whenever it joins the group
   * again, even when a rebalance leaves this member's partitions as they were, and would fetch
   * from the committed offset, handing out again what BLPOPs already got; §3.7 says nothing is
   * redelivered within one consumer's life, so such a join seeks past these.
   */
  private readonly handedOut = new Map<string, HandedOut>();
  /** The member id of the last join, which tells a rejoin from a new membership. */
  private memberId: string | undefined;

  constructor(
    private readonly spec: ConsumerSpec,
    private readonly port: KafkajsPort,
    log: Logger,
    private readonly metrics: RafkaMetrics,
  ) {
    this.log = log.child({ component: 'consumer', group: spec.groupId });
    const cfg = spec.config;
    const kafka = kafkaFor(cfg, spec.clientId, log);
    this.consumer = kafka.consumer({
      groupId: spec.groupId,
      partitionAssigners: cfg.assignors.map(kafkajsAssigner),
      sessionTimeout: cfg.sessionTimeoutMs,
      rebalanceTimeout: cfg.rebalanceTimeoutMs,
      heartbeatInterval: cfg.heartbeatIntervalMs,
      metadataMaxAge: cfg.metadataMaxAgeMs,
      allowAutoTopicCreation: cfg.allowAutoTopicCreation,
      maxBytesPerPartition: cfg.maxBytesPerPartition,
      minBytes: cfg.minBytes,
      maxBytes: cfg.maxBytes,
      maxWaitTimeInMs: cfg.maxWaitTimeMs,
      readUncommitted: cfg.readUncommitted,
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, (event) => {
      const assignment = new Map(Object.entries(event.payload.memberAssignment));
      this.resumePositions(event.payload.memberId, assignment);
      for (const listener of this.listeners.assigned) listener(assignment);
    });
    // TODO: kafkajs has no revoke callback that runs before it rejoins; a rebalance noticed by its
    // own heartbeat only triggers this event, and the commit races the rejoin, so the broker may
    // refuse it and the new owner re-reads those acked messages (at-least-once still holds).
    // A rebalance noticed while a message waits for a BLPOP is committed before rejoining.
    this.consumer.on(this.consumer.events.REBALANCING, () => {
      for (const listener of this.listeners.revoking) void listener();
    });
    this.consumer.on(this.consumer.events.CRASH, (event) => {
      const { error, restart } = event.payload;
      // kafkajs restarts only after errors it deems retriable. A broker down for longer than its
      // coordinator lookup retries crashes the consumer with KafkaJSGroupCoordinatorNotFound,
      // which it does not restart; that is Kafka out of reach, so the consumer starts over here
      // with the usual backoff and BLPOP keeps answering `*-1` until Kafka is back.
      const startOver = !restart && !this.closing && isUnreachableCrash(error);
      for (const listener of this.listeners.failed) listener(error, restart || startOver);
      if (startOver) {
        this.running = false;
        this.generation += 1;
        void this.start(this.generation);
      }
    });
    void this.start(this.generation);
  }

  on<E extends keyof ConsumerEvents>(event: E, listener: ConsumerEvents[E]): void {
    this.listeners[event].push(listener);
  }

  /**
   * After a join as the same member: partitions kept go on after the last message handed out
   * (kafkajs applies the seek before its next fetch of them). Partitions given up are forgotten:
   * should one come back in a later generation, another member may have read it meanwhile, so it
   * starts at the committed offset like any new assignment. A new member id (the first join, a
   * crash restart, a member the coordinator dropped) is a new life: generations went by without
   * this member, so every partition starts at the committed offset.
   */
  private resumePositions(memberId: string, assignment: Map<string, number[]>): void {
    if (memberId !== this.memberId) {
      this.memberId = memberId;
      this.handedOut.clear();
      return;
    }
    for (const [key, position] of this.handedOut) {
      if (!assignment.get(position.topic)?.includes(position.partition)) {
        this.handedOut.delete(key);
        continue;
      }
      if (position.offset === '-1') continue; // a batch that handed nothing out
      const offset = (BigInt(position.offset) + 1n).toString();
      this.consumer.seek({ topic: position.topic, partition: position.partition, offset });
    }
  }

  /** The record of what was handed out on the batch's partition, made on its first batch. */
  private positionOf(payload: EachBatchPayload): HandedOut {
    const { topic, partition } = payload.batch;
    const key = `${partition}\0${topic}`;
    let position = this.handedOut.get(key);
    if (position === undefined) {
      position = { topic, partition, offset: '-1' };
      this.handedOut.set(key, position);
    }
    return position;
  }

  /**
   * Connects, subscribes and runs, retrying while Kafka is unreachable. Topics that do not exist
   * yet are rechecked every `topic.metadata.refresh.interval.ms`; when one appears the consumer
   * stops, subscribes to it as well and runs again (kafkajs cannot change a running
   * subscription), after committing the stored offsets.
   */
  private async start(generation: number): Promise<void> {
    let backoff = this.spec.config.retryBackoffMs;
    let connected = false;
    const subscribed = new Set<string>();
    const current = (): boolean => !this.closing && generation === this.generation;
    while (current()) {
      try {
        const existing = await this.port.refreshMetadata(this.spec.topics);
        if (!current()) return;
        const fresh = this.spec.topics.filter((t) => existing.has(t) && !subscribed.has(t));
        if (fresh.length > 0) {
          if (!connected) {
            await this.consumer.connect();
            connected = true;
            if (!this.counted) this.metrics.kafkaClients.inc({ role: 'consumer' });
            this.counted = true;
          }
          if (this.running) await this.restartForTopics(fresh);
          await this.consumer.subscribe({
            topics: fresh,
            fromBeginning: this.spec.config.fromBeginning,
          });
          for (const topic of fresh) subscribed.add(topic);
          if (this.closing) return;
          await this.consumer.run({
            autoCommit: false,
            eachBatchAutoResolve: false,
            partitionsConsumedConcurrently: 1,
            eachBatch: (payload) => this.eachBatch(payload),
          });
          this.running = true;
          backoff = this.spec.config.retryBackoffMs;
        }
        const missing = this.spec.topics.filter((t) => !subscribed.has(t));
        if (missing.length === 0) return;
        this.log.info('waiting for missing topics', { missing });
        await sleep(this.spec.config.metadataMaxAgeMs, undefined, { signal: this.stop.signal });
      } catch (err) {
        if (!current()) return;
        this.log.warn('consumer cannot start, retrying', { err, retryInMs: backoff });
        await sleep(backoff, undefined, { signal: this.stop.signal }).catch(() => undefined);
        backoff = Math.min(backoff * 2, MAX_RECONNECT_MS);
      }
    }
  }

  /** Stops the running consumer so new topics can join its subscription. */
  private async restartForTopics(topics: string[]): Promise<void> {
    this.log.info('topics appeared, resubscribing', { topics });
    await Promise.allSettled(this.listeners.revoking.map((l) => Promise.resolve(l())));
    this.restarting = true;
    this.offer?.settle();
    try {
      await this.consumer.stop();
    } finally {
      this.restarting = false;
      this.running = false;
    }
  }

  /**
   * Hands the batch out: its first message straight to a waiting BLPOP, the rest through one
   * offer that BLPOPs take from synchronously (`tryNext`). One heartbeat timer and one promise
   * serve the whole batch, not one per message.
   */
  private eachBatch(payload: EachBatchPayload): Promise<void> {
    const { messages } = payload.batch;
    if (messages.length === 0 || !this.batchUsable(payload)) return Promise.resolve();
    let index = 0;
    const position = this.positionOf(payload);
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(this.take(payload, position, index++));
    }
    if (index >= messages.length) return Promise.resolve();
    this.metrics.consumerBufferedMessages.inc();
    return new Promise<void>((resolve, reject) => {
      const interval = Math.max(100, Math.floor(this.spec.config.heartbeatIntervalMs / 2));
      const beat = setInterval(() => {
        if (!this.batchUsable(payload)) return finish();
        payload.heartbeat().catch(async (err: unknown) => {
          if (this.offer !== offer) return;
          this.offer = undefined;
          clearInterval(beat);
          this.metrics.consumerBufferedMessages.dec();
          if (isRebalanceError(err)) {
            await Promise.allSettled(this.listeners.revoking.map((l) => Promise.resolve(l())));
          }
          reject(err instanceof Error ? err : new Error(String(err)));
        });
      }, interval);
      const finish = (): void => {
        if (this.offer !== offer) return;
        this.offer = undefined;
        clearInterval(beat);
        this.metrics.consumerBufferedMessages.dec();
        resolve();
      };
      const offer: Offer = { payload, index, position, settle: finish };
      this.offer = offer;
    });
  }

  /** False when the batch must stop: closing, resubscribing, stopped, or seeked. */
  private batchUsable(payload: EachBatchPayload): boolean {
    return this.batchRunning(payload) && !payload.isStale();
  }

  /**
   * The per-message part of `batchUsable`. Staleness (a pending `seek` on the partition) is
   * checked when the batch starts and on every heartbeat tick only: kafkajs computes it with a
   * JSON key per call, and rafka never seeks.
   */
  private batchRunning(payload: EachBatchPayload): boolean {
    return !this.closing && !this.restarting && payload.isRunning();
  }

  /** Message `index` of the batch as handed out; the fetch position moves past it. */
  private take(payload: EachBatchPayload, position: HandedOut, index: number): ConsumedMessage {
    const { batch } = payload;
    const m = batch.messages[index];
    payload.resolveOffset(m.offset);
    position.offset = m.offset;
    return {
      topic: batch.topic,
      partition: batch.partition,
      offset: BigInt(m.offset),
      value: m.value,
    };
  }

  /** The offer's next message, ending the offer after its last one or when the batch must stop. */
  private takeOffered(offer: Offer): ConsumedMessage | undefined {
    if (!this.batchRunning(offer.payload)) {
      offer.settle();
      return undefined;
    }
    const message = this.take(offer.payload, offer.position, offer.index++);
    if (offer.index >= offer.payload.batch.messages.length) offer.settle();
    return message;
  }

  tryNext(): ConsumedMessage | undefined {
    const offer = this.offer;
    if (this.closing || !offer) return undefined;
    return this.takeOffered(offer);
  }

  next(signal: AbortSignal): Promise<ConsumedMessage | undefined> {
    if (this.closing || signal.aborted) return Promise.resolve(undefined);
    const offer = this.offer;
    const ready = offer && this.takeOffered(offer);
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        if (this.waiter === deliver) this.waiter = undefined;
        resolve(undefined);
      };
      const deliver = (message: ConsumedMessage | undefined): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(message);
      };
      this.waiter = deliver;
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async commit(offsets: readonly TopicOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    if (!this.running) throw new Error('consumer is not running');
    await this.consumer.commitOffsets(
      offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset.toString() })),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    this.stop.abort();
    this.offer?.settle();
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(undefined);
    try {
      await this.consumer.disconnect();
    } finally {
      if (this.counted) this.metrics.kafkaClients.dec({ role: 'consumer' });
      this.counted = false;
      this.running = false;
    }
  }
}
