/**
 * The RESP server: accepts connections, owns the process-wide state they share (names, monitors,
 * the shared producer, consumer closes in the background) and runs the shutdown order of §3.10.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import { listen } from '../common/net.js';
import { Connection, formatMonitor } from './connection.js';
import { ConsumerSession } from './consumer-session.js';
import type { LoadedConfig } from './kafka-config.js';
import type { ConsumerSpec, KafkaPort } from './kafka-port.js';
import type { ProducerStats, RafkaMetrics } from './metrics.js';
import type { ProducerState, SharedProducer } from './producer.js';
import type { RequestArgs } from './resp-decoder.js';
import type { ConnectionOptions, NamedConnection, ServerContext } from './server-context.js';

export interface RafkaServerOptions extends ConnectionOptions {
  host: string;
  port: number;
  /** Hard bound from the stop signal to the end of close(), ms. */
  shutdownTimeoutMs: number;
}

export interface RafkaServerDeps {
  config: LoadedConfig;
  kafka: KafkaPort;
  producer: SharedProducer;
  stats: ProducerStats;
  metrics: RafkaMetrics;
  log: Logger;
}

/** Leaves time after the deadline for the last steps (disconnects, the exit itself). */
const TEARDOWN_RESERVE_MS = 400;
const KAFKA_DISCONNECT_MS = 500;

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());

async function settledWithin(work: Promise<unknown>[], ms: number): Promise<boolean> {
  if (work.length === 0) return true;
  let finished = false;
  await Promise.race([
    Promise.allSettled(work).then(() => {
      finished = true;
    }),
    sleep(ms),
  ]);
  return finished;
}

export class RafkaServer implements ServerContext {
  readonly options: ConnectionOptions;
  readonly config: LoadedConfig;
  readonly kafka: KafkaPort;
  readonly producer: SharedProducer;
  readonly stats: ProducerStats;
  readonly metrics: RafkaMetrics;
  readonly log: Logger;
  readonly monitors = new Set<NamedConnection>();
  shuttingDown = false;
  private readonly shutdown = new AbortController();
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private readonly byId = new Map<string, NamedConnection>();
  private readonly liveConsumers = new Set<ConsumerSession>();
  private readonly consumerCloses = new Set<Promise<void>>();
  private lastDropLogMs = 0;

  constructor(
    private readonly serverOptions: RafkaServerOptions,
    deps: RafkaServerDeps,
  ) {
    this.options = serverOptions;
    this.config = deps.config;
    this.kafka = deps.kafka;
    this.producer = deps.producer;
    this.stats = deps.stats;
    this.metrics = deps.metrics;
    this.log = deps.log.child({ component: 'server' });
    this.server = createServer((socket) => this.accept(socket));
  }

  get shutdownSignal(): AbortSignal {
    return this.shutdown.signal;
  }

  listen(): Promise<AddressInfo> {
    return listen(this.server, this.serverOptions.port, this.serverOptions.host);
  }

  private accept(socket: Socket): void {
    const connection = new Connection(socket, this);
    this.connections.add(connection);
    this.byId.set(connection.id, connection);
    this.metrics.connections.inc();
    this.metrics.connectionsAccepted.inc();
    void connection.closed.then(() => {
      this.connections.delete(connection);
      this.metrics.connections.dec();
    });
  }

  isTaken(id: string): boolean {
    return this.byId.has(id);
  }

  rename(connection: NamedConnection, name: string): void {
    if (this.byId.get(connection.id) === connection) this.byId.delete(connection.id);
    this.byId.set(name, connection);
  }

  release(connection: NamedConnection): void {
    if (this.byId.get(connection.id) === connection) this.byId.delete(connection.id);
  }

  addMonitor(connection: NamedConnection): void {
    this.monitors.add(connection);
    this.metrics.monitors.set(this.monitors.size);
  }

  removeMonitor(connection: NamedConnection): void {
    this.monitors.delete(connection);
    this.metrics.monitors.set(this.monitors.size);
  }

  broadcastMonitor(issuer: string, args: RequestArgs): void {
    const line = formatMonitor(issuer, args);
    for (const monitor of this.monitors) monitor.writeMonitor(line);
  }

  noteMonitorDrop(monitorId: string): void {
    const now = Date.now();
    if (now - this.lastDropLogMs < 10_000) return;
    this.lastDropLogMs = now;
    this.log.warn('monitor lines dropped: the monitor does not read fast enough', {
      client: monitorId,
    });
  }

  createConsumer(spec: ConsumerSpec, consumerId: string): ConsumerSession {
    const port = this.kafka.createConsumer(spec);
    const session = new ConsumerSession(
      consumerId,
      spec.topics,
      port,
      this.kafka,
      spec.config.autoCommit,
      spec.config.autoCommitIntervalMs,
      this.metrics,
      this.log.child({ component: 'consumer', client: consumerId.split('|')[0] }),
    );
    this.liveConsumers.add(session);
    this.metrics.consumers.set(this.liveConsumers.size);
    this.metrics.consumerRegistrations.inc({ outcome: 'ok' });
    this.log.info('consumer registered', { consumerId, group: spec.groupId, topics: spec.topics });
    return session;
  }

  closeConsumer(session: ConsumerSession): void {
    const closing = session
      .close()
      .catch((err: unknown) => this.log.warn('consumer close failed', { err }))
      .finally(() => {
        this.liveConsumers.delete(session);
        this.metrics.consumers.set(this.liveConsumers.size);
        this.consumerCloses.delete(closing);
      });
    this.consumerCloses.add(closing);
  }

  settleProducerState(state: ProducerState, clientId: string): void {
    if (state.outstanding === 0) return;
    this.producer.flushNow();
    void state.waitIdle(this.options.flushTimeoutMs).then((left) => {
      if (left === 0) return;
      const counted = this.producer.countUnflushed(state);
      this.log.warn('unflushed messages at close', { client: clientId, count: counted });
    });
  }

  /** The shutdown order of §3.10; resolves with the exit code. */
  async close(): Promise<number> {
    const started = Date.now();
    const total = this.serverOptions.shutdownTimeoutMs;
    const deadline = started + total - TEARDOWN_RESERVE_MS;
    const phase = (name: string, since: number): void =>
      this.log.info('shutdown phase done', { phase: name, durationMs: Date.now() - since });

    // 1. Teardown begins: BLPOPs now reply `CONS Server shutdown`.
    this.shuttingDown = true;
    this.metrics.shuttingDown.set(1);
    this.shutdown.abort();

    // 2–3. Consumers close first, bounded so the producer keeps time to flush.
    let since = Date.now();
    for (const connection of this.connections) {
      if (connection.hasConsumer) connection.closeAfterCurrent();
    }
    const consumerBudget = total - Math.min(this.options.flushTimeoutMs, total / 2);
    while (this.consumerCloses.size > 0 || this.pendingConsumerConnections() > 0) {
      const left = started + consumerBudget - Date.now();
      if (left <= 0) break;
      await settledWithin([...this.consumerCloses, sleep(50)], Math.min(left, 50));
    }
    const abandoned = this.liveConsumers.size;
    phase('consumers', since);

    // 4. The listener closes.
    since = Date.now();
    // Stop accepting now; net.Server's close callback would wait for every open connection.
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    phase('listener', since);

    // 5. Remaining connections stop reading; a DUMP in progress still gets its answer.
    since = Date.now();
    const open = [...this.connections];
    for (const connection of open) connection.stopServing();
    const allClosed = await settledWithin(
      open.map((c) => c.closed),
      deadline - Date.now(),
    );
    if (!allClosed) for (const connection of this.connections) connection.destroy();
    await settledWithin([listenerClosed], 100);
    phase('connections', since);

    // 6. The shared producer flushes until empty or the deadline.
    since = Date.now();
    const leftover = await this.producer.drain(deadline - Date.now());
    this.producer.stop();
    phase('producer', since);

    // 7. Kafka is disconnected; leftovers are counted and logged.
    since = Date.now();
    await settledWithin([this.kafka.disconnect()], KAFKA_DISCONNECT_MS);
    phase('kafka', since);
    const unflushed = leftover > 0 ? this.producer.countUnflushed() : 0;
    const clean = leftover === 0 && abandoned === 0;
    const summary = {
      durationMs: Date.now() - started,
      unflushed: leftover,
      newlyCountedUnflushed: unflushed,
      abandonedConsumers: abandoned,
    };
    if (clean) this.log.info('rafka stopped', summary);
    else this.log.error('rafka stopped with leftovers', summary);
    return clean ? 0 : 1;
  }

  private pendingConsumerConnections(): number {
    let n = 0;
    for (const connection of this.connections) if (connection.hasConsumer) n++;
    return n;
  }

  /** Forced stop: cut every connection now. */
  destroy(): void {
    this.shuttingDown = true;
    this.shutdown.abort();
    for (const connection of this.connections) connection.destroy();
    this.producer.stop();
    const leftover = this.producer.buffered;
    if (leftover > 0) this.producer.countUnflushed();
    this.log.error('forced stop', {
      unflushed: leftover,
      unclosedConsumers: this.liveConsumers.size,
    });
  }
}
