/** rafka's Prometheus metrics (§6), all on the component's own registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { VERSION } from '../common/version.js';

export const COMMAND_LABELS = [
  'blpop',
  'rpush',
  'rpushx',
  'dump',
  'keys',
  'hgetall',
  'del',
  'ping',
  'quit',
  'monitor',
  'client',
  'other',
] as const;
export type CommandLabel = (typeof COMMAND_LABELS)[number];

export function createRafkaMetrics(registry: Registry) {
  const registers = [registry];
  /** The shared producer installs its own readers; the gauges read them at scrape time. */
  const bufferSource = { messages: (): number => 0, bytes: (): number => 0 };
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers });
  const metrics = {
    buildInfo: gauge('rafka_build_info', 'Always 1; the version label names the build.', [
      'version',
    ]),
    connections: gauge('rafka_connections', 'Open RESP connections.'),
    connectionsAccepted: counter('rafka_connections_accepted_total', 'Accepted RESP connections.'),
    commands: counter('rafka_commands_total', 'Commands run.', ['command', 'outcome']),
    commandDuration: new Histogram<'command'>({
      name: 'rafka_command_duration_seconds',
      help: 'Command arrival to reply.',
      labelNames: ['command'],
      buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    }),
    protocolErrors: counter('rafka_protocol_errors_total', 'Protocol errors.', ['error']),
    kafkaClients: gauge('rafka_kafka_clients', 'Live Kafka clients.', ['role']),
    producerAccepted: counter('rafka_producer_accepted_messages_total', 'RPUSHX answered :1.'),
    producerAcceptedBytes: counter(
      'rafka_producer_accepted_bytes_total',
      'Key and value bytes answered :1.',
    ),
    producerRejected: counter(
      'rafka_producer_rejected_messages_total',
      'Synchronous PROD errors.',
      ['reason'],
    ),
    producerDelivered: counter(
      'rafka_producer_delivered_messages_total',
      'Acknowledged by Kafka.',
      ['topic'],
    ),
    producerDeliveryErrors: counter('rafka_producer_delivery_errors_total', 'Failed deliveries.', [
      'reason',
    ]),
    producerUnflushed: counter(
      'rafka_producer_unflushed_messages_total',
      'Messages outstanding past a close flush.',
    ),
    producerUnknownEvents: counter(
      'rafka_producer_unknown_events_total',
      'Producer-level errors of no single message.',
    ),
    producerBufferedMessages: new Gauge({
      name: 'rafka_producer_buffered_messages',
      help: 'Accepted, not yet resolved.',
      registers,
      collect() {
        this.set(bufferSource.messages());
      },
    }),
    producerBufferedBytes: new Gauge({
      name: 'rafka_producer_buffered_bytes',
      help: 'Bytes accepted, not yet resolved.',
      registers,
      collect() {
        this.set(bufferSource.bytes());
      },
    }),
    producerDeliverySeconds: new Histogram({
      name: 'rafka_producer_delivery_seconds',
      help: 'Acceptance to resolution.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
      registers,
    }),
    producerBatchMessages: new Histogram({
      name: 'rafka_producer_batch_messages',
      help: 'Messages per send.',
      buckets: [1, 10, 100, 1000, 10_000],
      registers,
    }),
    consumers: gauge('rafka_consumers', 'Live consumers.'),
    consumerAssignedPartitions: gauge(
      'rafka_consumer_assigned_partitions',
      'Partitions held by consumers.',
    ),
    consumerBufferedMessages: gauge(
      'rafka_consumer_buffered_messages',
      'Fetched, not yet handed out.',
    ),
    consumerRegistrations: counter('rafka_consumer_registrations_total', 'Consumer creations.', [
      'outcome',
    ]),
    consumerFailures: counter('rafka_consumer_failures_total', 'Consumer errors.', ['retriable']),
    consumerMessages: counter('rafka_consumer_messages_total', 'Messages handed out by BLPOP.', [
      'topic',
    ]),
    blpopTimeouts: counter('rafka_blpop_timeouts_total', 'BLPOPs answered *-1.'),
    rebalances: counter('rafka_rebalances_total', 'Group rebalances seen by consumers.'),
    acks: counter('rafka_acks_total', 'RPUSH acks.', ['outcome']),
    commits: counter('rafka_commits_total', 'Offset commit requests.', ['outcome']),
    monitors: gauge('rafka_monitors', 'Connections in MONITOR mode.'),
    monitorDropped: counter(
      'rafka_monitor_dropped_lines_total',
      'MONITOR lines dropped for slow monitors.',
    ),
    shuttingDown: gauge('rafka_shutting_down', '1 during shutdown.'),
  };
  metrics.buildInfo.set({ version: VERSION }, 1);
  // Per-command children, resolved once: the label lookup is the hot path of every request.
  const counters = new Map<string, ReturnType<typeof metrics.commands.labels>>();
  const timers = new Map<string, ReturnType<typeof metrics.commandDuration.labels>>();
  for (const command of COMMAND_LABELS) {
    timers.set(command, metrics.commandDuration.labels({ command }));
    for (const outcome of ['ok', 'error']) {
      counters.set(`${command}:${outcome}`, metrics.commands.labels({ command, outcome }));
    }
  }
  for (const role of ['producer', 'consumer', 'admin']) metrics.kafkaClients.set({ role }, 0);
  return {
    ...metrics,
    bufferSource,
    commandCounter: (command: CommandLabel, outcome: 'ok' | 'error') =>
      counters.get(`${command}:${outcome}`) as ReturnType<typeof metrics.commands.labels>,
    commandTimer: (command: CommandLabel) =>
      timers.get(command) as ReturnType<typeof metrics.commandDuration.labels>,
  };
}

export type RafkaMetrics = ReturnType<typeof createRafkaMetrics>;

/** The process-global counters `HGETALL stats` shows and `DEL stats` zeroes. */
export class ProducerStats {
  unflushedMessages = 0;
  deliveryErrors = 0;
  unknownEvents = 0;

  reset(): void {
    this.unflushedMessages = 0;
    this.deliveryErrors = 0;
    this.unknownEvents = 0;
  }
}
