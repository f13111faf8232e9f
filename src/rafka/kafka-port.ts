/**
 * The Kafka boundary (§3.9): the only operations rafka needs, in neutral types. The kafkajs adapter
 * implements it; the RESP layer, the partitioner, the config validator and the accounting depend
 * on this file only, so the library can be swapped without touching them.
 */
import type { ConsumerConfig, ProducerConfig } from './kafka-config.js';

/** A record to produce; the partition is already chosen by rafka. */
export interface ProduceRecord {
  topic: string;
  partition: number;
  key: Buffer | null;
  value: Buffer | null;
}

export type DeliveryFailureKind = 'unknown_topic' | 'timeout' | 'broker';

export type DeliveryResult =
  { ok: true } | { ok: false; kind: DeliveryFailureKind; message: string; retriable: boolean };

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: bigint;
  value: Buffer | null;
}

export interface TopicOffset {
  topic: string;
  partition: number;
  /** The position to commit: the next offset to read. */
  offset: bigint;
}

export interface ConsumerEvents {
  /** The group assigned these partitions, replacing the previous assignment. */
  assigned: (assignment: Map<string, number[]>) => void;
  /** The group is rebalancing; stored offsets should be committed now. */
  /** May return a promise; the adapter waits for it before giving partitions up where it can. */
  revoking: () => void | Promise<void>;
  failed: (error: Error, retriable: boolean) => void;
}

export interface KafkaConsumerPort {
  /** The next message if one is buffered right now, without waiting. */
  tryNext(): ConsumedMessage | undefined;
  /** The next buffered message; resolves undefined when `signal` aborts or the consumer closes. */
  next(signal: AbortSignal): Promise<ConsumedMessage | undefined>;
  commit(offsets: readonly TopicOffset[]): Promise<void>;
  close(): Promise<void>;
  on<E extends keyof ConsumerEvents>(event: E, listener: ConsumerEvents[E]): void;
}

export interface ConsumerSpec {
  groupId: string;
  clientId: string;
  topics: string[];
  config: ConsumerConfig;
}

export interface KafkaPort {
  /** Sends records; one result per record, in order. Never rejects. */
  send(records: readonly ProduceRecord[]): Promise<DeliveryResult[]>;
  /** Cached partition count, or undefined when the topic is not (yet) known. */
  partitionCount(topic: string): number | undefined;
  /**
   * Refreshes metadata of these topics; resolves with those that exist. Rejects when Kafka is
   * unreachable.
   */
  refreshMetadata(topics: readonly string[]): Promise<Set<string>>;
  listTopics(timeoutMs: number): Promise<string[]>;
  createConsumer(spec: ConsumerSpec): KafkaConsumerPort;
  disconnect(): Promise<void>;
}

export type KafkaPortFactory = (producer: ProducerConfig) => KafkaPort;
