/**
 * scratchd's metrics (§6), in its own Registry. Label names are only tenant, sink, route, code
 * and reason; ids, URLs, IPs and hosts never become labels.
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type LabelValues,
} from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name, help, labelNames, registers });
  const histogram = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    buckets: number[],
  ) => new Histogram<L>({ name, help, labelNames, buckets, registers });
  const tallied = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Tallies<L>((collect) => new Counter<L>({ name, help, labelNames, registers, collect }));
  const m = {
    registry,
    httpRequests: tallied(
      'scratchd_http_requests_total',
      'HTTP requests by route and status code.',
      ['route', 'code'],
    ),
    httpDuration: histogram(
      'scratchd_http_request_duration_seconds',
      'HTTP request duration.',
      ['route'],
      [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    ),
    received: tallied('scratchd_events_received_total', 'Events received, before validation.', [
      'tenant',
      'route',
    ]),
    accepted: tallied('scratchd_events_accepted_total', 'Events accepted into every target sink.', [
      'tenant',
    ]),
    rejected: counter('scratchd_events_rejected_total', 'Events not accepted, by reason.', [
      'tenant',
      'reason',
    ]),
    dropped: counter(
      'scratchd_events_dropped_total',
      'Events dropped on purpose (bot, opt-out, spool full).',
      ['tenant', 'reason'],
    ),
    fieldsDropped: counter(
      'scratchd_fields_dropped_total',
      'Fields removed from accepted events.',
      ['tenant', 'reason'],
    ),
    sinkWritten: counter('scratchd_sink_events_written_total', 'Events acked by a sink.', ['sink']),
    sinkErrors: counter('scratchd_sink_write_errors_total', 'Failed sink writes.', [
      'sink',
      'reason',
    ]),
    sinkDropped: counter(
      'scratchd_sink_dropped_total',
      'Copies a sink could not take (spool full).',
      ['sink', 'reason'],
    ),
    sinkHealthy: gauge('scratchd_sink_healthy', '1 while a sink is healthy or replaying.', [
      'sink',
    ]),
    sinkBatch: histogram(
      'scratchd_sink_batch_events',
      'Events per sink write.',
      ['sink'],
      [1, 5, 10, 50, 100, 250, 500, 1000],
    ),
    sinkDuration: histogram(
      'scratchd_sink_write_duration_seconds',
      'Sink write duration.',
      ['sink'],
      [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    ),
    deliveryLag: histogram(
      'scratchd_event_delivery_lag_seconds',
      'Receive to ack, per event.',
      ['sink'],
      [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300, 3600],
    ),
    queueEvents: gauge('scratchd_queue_events', 'Events in a sink memory queue.', ['sink']),
    queueBytes: gauge('scratchd_queue_bytes', 'Bytes in a sink memory queue.', ['sink']),
    memoryBudget: gauge('scratchd_memory_budget_bytes', 'The memory budget for event bytes.', []),
    memoryUsed: gauge('scratchd_memory_used_bytes', 'Event bytes held in memory.', []),
    ready: gauge('scratchd_ready', '1 while /readyz answers 200.', []),
    spoolBytes: gauge('scratchd_spool_bytes', 'Bytes in a sink spool.', ['sink']),
    spoolSegments: gauge('scratchd_spool_segments', 'Segments in a sink spool.', ['sink']),
    spoolSpilled: counter('scratchd_spool_spilled_total', 'Events written to a sink spool.', [
      'sink',
    ]),
    spoolReplayed: counter('scratchd_spool_replayed_total', 'Spooled events delivered.', ['sink']),
    spoolCorrupt: counter('scratchd_spool_corrupt_records_total', 'Corrupt spool records found.', [
      'sink',
    ]),
    walBytes: gauge('scratchd_wal_bytes', 'Bytes in the WAL.', []),
    walFsync: histogram(
      'scratchd_wal_fsync_duration_seconds',
      'WAL group commit duration.',
      [],
      [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    ),
    deadLetter: counter(
      'scratchd_dead_letter_total',
      'Events dead-lettered after a fatal sink error.',
      ['sink', 'reason'],
    ),
    saltRotations: counter('scratchd_salt_rotations_total', 'Daily salt rotations.', []),
    reloads: counter('scratchd_config_reloads_total', 'Successful config reloads.', []),
    reloadErrors: counter('scratchd_config_reload_errors_total', 'Rejected config reloads.', []),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Increments of one label set that prom-client has not been given yet. */
export interface Tally {
  count: number;
}

/**
 * A counter for the request path. prom-client hashes the label values again on every `inc()`,
 * even on a child from `labels()`; here an increment is `tally.count += 1` on an object the caller
 * keeps, and the counts are handed to the counter each time it is collected, so every scrape
 * still sees every increment made before it.
 */
export class Tallies<L extends string> {
  readonly counter: Counter<L>;
  private readonly byKey = new Map<string, { labels: LabelValues<L>; tally: Tally }>();

  /** `make` builds the counter with the given collect hook, which prom-client calls per scrape. */
  constructor(make: (collect: () => void) => Counter<L>) {
    this.counter = make(() => this.flush());
  }

  /** The tally of one label set; callers on the request path keep it instead of asking again. */
  get(labels: LabelValues<L>): Tally {
    const key = Object.values(labels).join('\u0000');
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      entry = { labels: { ...labels }, tally: { count: 0 } };
      this.byKey.set(key, entry);
    }
    return entry.tally;
  }

  inc(labels: LabelValues<L>, n = 1): void {
    this.get(labels).count += n;
  }

  flush(): void {
    for (const { labels, tally } of this.byKey.values()) {
      if (tally.count === 0) continue;
      this.counter.inc(labels, tally.count);
      tally.count = 0;
    }
  }
}
