/** What a connection needs from the server, so connection.ts does not import server.ts. */
import type { Logger } from '../common/logger.js';
import type { ConsumerSession } from './consumer-session.js';
import type { LoadedConfig } from './kafka-config.js';
import type { ConsumerSpec, KafkaPort } from './kafka-port.js';
import type { ProducerStats, RafkaMetrics } from './metrics.js';
import type { ProducerState, SharedProducer } from './producer.js';
import type { RequestArgs } from './resp-decoder.js';

export interface ConnectionOptions {
  /** Default BLPOP timeout, seconds. */
  blpopTimeoutSeconds: number;
  /** How long a closing connection's messages may take before they count as unflushed, ms. */
  flushTimeoutMs: number;
}

export interface NamedConnection {
  id: string;
  writeMonitor(line: Buffer): void;
}

export interface ServerContext {
  readonly options: ConnectionOptions;
  readonly config: LoadedConfig;
  readonly kafka: KafkaPort;
  readonly producer: SharedProducer;
  readonly stats: ProducerStats;
  readonly metrics: RafkaMetrics;
  readonly log: Logger;
  readonly monitors: ReadonlySet<NamedConnection>;
  readonly shuttingDown: boolean;
  /** Aborted when teardown begins; waiting BLPOPs then reply `CONS Server shutdown`. */
  readonly shutdownSignal: AbortSignal;
  isTaken(id: string): boolean;
  rename(connection: NamedConnection, name: string): void;
  release(connection: NamedConnection): void;
  addMonitor(connection: NamedConnection): void;
  removeMonitor(connection: NamedConnection): void;
  broadcastMonitor(issuer: string, args: RequestArgs): void;
  noteMonitorDrop(monitorId: string): void;
  createConsumer(spec: ConsumerSpec, consumerId: string): ConsumerSession;
  closeConsumer(consumer: ConsumerSession): void;
  settleProducerState(state: ProducerState, clientId: string): void;
}
