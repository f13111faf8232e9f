/** Where callbacks go: an HTTP POST or a Kafka message. */
import { Agent as HttpAgent, STATUS_CODES } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import got from 'got';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import type { Logger } from '../../common/logger.js';
import type { KafkaBackendConfig } from '../config.js';

export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    message: string,
    readonly unknownTopic = false,
  ) {
    super(message);
  }
}

export interface Backend {
  readonly id: 'http' | 'kafka';
  send(destination: string, payload: string, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export class HttpBackend implements Backend {
  readonly id = 'http' as const;
  private readonly agents = {
    http: new HttpAgent({ keepAlive: true, maxSockets: 256 }),
    https: new HttpsAgent({ keepAlive: true, maxSockets: 256 }),
  };

  constructor(private readonly timeoutMs: number) {}

  async send(url: string, payload: string, signal: AbortSignal): Promise<void> {
    let response;
    try {
      response = await got.post(url, {
        body: payload,
        headers: { 'content-type': 'application/json' },
        agent: this.agents,
        timeout: { request: this.timeoutMs },
        retry: { limit: 0 },
        throwHttpErrors: false,
        followRedirect: false,
        signal,
      });
    } catch (err) {
      throw new DeliveryError(err instanceof Error ? err.message : String(err));
    }
    const code = response.statusCode;
    if (code < 200 || code > 299) {
      throw new DeliveryError(
        `Received Status: ${code} ${response.statusMessage || STATUS_CODES[code] || ''}`.trimEnd(),
      );
    }
  }

  close(): Promise<void> {
    this.agents.http.destroy();
    this.agents.https.destroy();
    return Promise.resolve();
  }
}

function isUnknownTopic(err: unknown): boolean {
  let current = err;
  for (let i = 0; i < 6 && current; i++) {
    if ((current as { type?: unknown }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return true;
    if (
      /UNKNOWN_TOPIC_OR_PARTITION|does not host this topic-partition/i.test(
        String((current as Error).message),
      )
    )
      return true;
    current =
      (current as { cause?: unknown; originalError?: unknown }).cause ??
      (current as { originalError?: unknown }).originalError;
  }
  return false;
}

export class KafkaBackend implements Backend {
  readonly id = 'kafka' as const;
  private readonly producer: Producer;
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly config: KafkaBackendConfig,
    logger: Logger,
  ) {
    if (config.ignoredKeys.length > 0)
      logger.warn('kafka_keys_ignored', { keys: config.ignoredKeys });
    const kafka = new Kafka({
      clientId: config.clientId,
      brokers: config.brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: 5000,
      requestTimeout: 10_000,
    });
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      retry: { retries: config.retries ?? 2, maxRetryTime: 5000 },
    });
  }

  private connect(): Promise<void> {
    this.connecting ??= this.producer.connect().catch((err: unknown) => {
      this.connecting = undefined;
      throw err;
    });
    return this.connecting;
  }

  async send(topic: string, payload: string): Promise<void> {
    try {
      await this.connect();
      await this.producer.send({ topic, acks: this.config.acks, messages: [{ value: payload }] });
    } catch (err) {
      throw new DeliveryError(
        err instanceof Error ? err.message : String(err),
        isUnknownTopic(err),
      );
    }
  }

  async close(): Promise<void> {
    if (this.connecting) await this.producer.disconnect();
  }
}
