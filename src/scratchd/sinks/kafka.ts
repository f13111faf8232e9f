/**
 * The `kafka` sink (§3.8): kafkajs `sendBatch` with acks=-1, a topic per tenant, keyed by
 * visitor. A batch the broker finds too large is halved; one event still too large is fatal.
 */
import { CompressionTypes, Kafka, logLevel, type Producer } from 'kafkajs';
import type { Logger } from '../../common/logger.js';
import { renderTemplate, type SinkConfigOf } from '../config.js';
import { eventKey, SinkWriteError, type Sink, type SinkEvent, type WriteResult } from './types.js';

type KafkaConfig = SinkConfigOf<'kafka'>;

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD']);

/** Whether kafkajs's error (or one it wraps) says the batch is too large for the broker. */
export function isTooLarge(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false;
  const e = err as { type?: unknown; cause?: unknown; originalError?: unknown; errors?: unknown };
  if (typeof e.type === 'string' && TOO_LARGE.has(e.type)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isTooLarge(x, depth + 1))) return true;
  return isTooLarge(e.originalError, depth + 1) || isTooLarge(e.cause, depth + 1);
}

export class KafkaSink implements Sink {
  readonly type = 'kafka';
  private readonly producer: Producer;
  private connected: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly config: KafkaConfig,
    instance: string,
    logger: Logger,
  ) {
    const log = logger.child({ sink: name });
    const kafka = new Kafka({
      clientId: config.client_id ?? `scratchd-${instance}`,
      brokers: config.brokers,
      connectionTimeout: Math.min(config.request_timeout_ms, 5000),
      requestTimeout: config.request_timeout_ms,
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
      logLevel: logLevel.ERROR,
      logCreator: () => (entry) => {
        if (entry.level <= logLevel.ERROR)
          log.debug('kafkajs', { message: entry.log.message, error: entry.log.error });
      },
    });
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: config.idempotent,
      maxInFlightRequests: config.idempotent ? 1 : undefined,
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
    });
  }

  private connect(): Promise<void> {
    this.connected ??= this.producer.connect().catch((err: unknown) => {
      this.connected = undefined;
      throw err;
    });
    return this.connected;
  }

  async write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    try {
      await this.connect();
    } catch (err) {
      throw new SinkWriteError(`kafka sink ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // One request per topic: a topic that refuses an oversize event does not make the others
    // retry (and duplicate) what they already stored.
    const byTopic = new Map<string, { event: SinkEvent; index: number }[]>();
    batch.forEach((event, index) => {
      const topic = renderTemplate(this.config.topic, event.meta.tenant);
      let list = byTopic.get(topic);
      if (list === undefined) byTopic.set(topic, (list = []));
      list.push({ event, index });
    });
    const fatal: WriteResult['fatal'] = [];
    for (const [topic, items] of byTopic) await this.send(topic, items, fatal);
    return { fatal };
  }

  private async send(
    topic: string,
    items: { event: SinkEvent; index: number }[],
    fatal: WriteResult['fatal'],
  ): Promise<void> {
    const messages = items.map(({ event }) => ({
      key: eventKey(event.meta, this.config.key) ?? event.meta.id,
      value: event.data,
    }));
    try {
      await this.producer.send({
        topic,
        messages,
        acks: -1,
        timeout: this.config.request_timeout_ms,
        compression:
          this.config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      });
    } catch (err) {
      if (!isTooLarge(err)) {
        throw new SinkWriteError(`kafka sink ${this.name}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (items.length === 1) {
        fatal.push({ index: items[0]?.index ?? 0, reason: 'message too large for the topic' });
        return;
      }
      const half = Math.ceil(items.length / 2);
      await this.send(topic, items.slice(0, half), fatal);
      await this.send(topic, items.slice(half), fatal);
    }
  }

  async probe(): Promise<void> {
    await this.connect();
  }

  async close(): Promise<void> {
    this.connected = undefined;
    await this.producer.disconnect();
  }
}
