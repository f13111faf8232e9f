/**
 * One dispatcher per sink (§3.9): a memory queue and the sink's spool, one batch in flight,
 * flushes at batch_events / batch_bytes / linger_ms, full-jitter backoff, and the health machine
 * healthy → unhealthy → replaying → healthy. A batch is retried as a whole (at-least-once).
 */
import type { Logger } from '../common/logger.js';
import type { DeadLetter } from './dead-letter.js';
import type { Metrics } from './metrics.js';
import type { Spool, SpoolBatch } from './spool.js';
import { metaFromEnvelope, type Sink, type SinkEvent } from './sinks/types.js';

export type SinkState = 'healthy' | 'unhealthy' | 'replaying';

export interface DispatchOptions {
  batch_events: number;
  batch_bytes: number;
  linger_ms: number;
  unhealthy_after: number;
  backoff_base_ms: number;
  backoff_max_ms: number;
}

/** An accepted event on its way to one sink. `settle` runs once it is acked, spooled or dead. */
export interface QueuedEvent extends SinkEvent {
  settle?: (() => void) | undefined;
}

interface Batch {
  events: QueuedEvent[];
  bytes: number;
  spooled?: SpoolBatch;
}

export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1)));
}

function settleAll(events: readonly QueuedEvent[]): void {
  for (const event of events) {
    const settle = event.settle;
    event.settle = undefined;
    settle?.();
  }
}

export class Dispatcher {
  state: SinkState = 'healthy';
  private queue: QueuedEvent[] = [];
  private queueBytes = 0;
  private inflight: Batch | undefined;
  private retry: Batch | undefined;
  private failures = 0;
  private wakeUp: (() => void) | undefined;
  /** While a small batch lingers, only a full batch ends the wait early. */
  private lingering = false;
  private closing = false;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private lastErrorLog = 0;
  private suppressed = 0;
  private readonly log: Logger;

  constructor(
    readonly sink: Sink,
    readonly spool: Spool,
    private readonly options: DispatchOptions,
    private readonly shareBytes: () => number,
    private readonly deadLetter: DeadLetter,
    private readonly metrics: Metrics,
    logger: Logger,
  ) {
    this.log = logger.child({ sink: sink.name });
    this.metrics.sinkHealthy.set({ sink: sink.name }, 1);
    if (spool.hasData) this.setState('replaying');
  }

  get name(): string {
    return this.sink.name;
  }

  /** Bytes this dispatcher holds in memory: its queue and its batch in flight. */
  get memoryBytes(): number {
    return this.queueBytes + (this.inflight && !this.inflight.spooled ? this.inflight.bytes : 0);
  }

  get queuedEvents(): number {
    return this.queue.length;
  }

  private get spooling(): boolean {
    return this.state === 'unhealthy' || this.spool.hasData;
  }

  /** Whether the event fits in memory or in the spool (§3.9 admission). */
  canAccept(bytes: number): boolean {
    if (!this.spool.full) return true;
    return !this.spooling && this.queueBytes + bytes <= this.shareBytes();
  }

  /** Hands one event over; false when neither memory nor spool can take it. */
  push(event: QueuedEvent): boolean {
    const bytes = event.data.length;
    if (this.closing || this.spooling || this.queueBytes + bytes > this.shareBytes()) {
      if (!this.spoolEvent(event)) return false;
    } else {
      this.queue.push(event);
      this.queueBytes += bytes;
    }
    // A lingering batch is woken once, when it fills, rather than by every event: each wake-up
    // costs a new timer and abort listener, once per pixel at full load.
    if (!this.lingering || this.batchFull()) this.wake();
    return true;
  }

  private batchFull(): boolean {
    return (
      this.queue.length >= this.options.batch_events || this.queueBytes >= this.options.batch_bytes
    );
  }

  private spoolEvent(event: QueuedEvent): boolean {
    const settle = event.settle;
    event.settle = undefined;
    const ok = this.spool.append(event.data, (err) => {
      if (err === undefined) settle?.();
    });
    if (ok) this.metrics.spoolSpilled.inc({ sink: this.name });
    else event.settle = settle;
    return ok;
  }

  private wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Waits `ms`; new work ends the wait early when `wakeable`, and so does the drain deadline. */
  private sleep(ms: number, wakeable = true): Promise<void> {
    return new Promise((resolve) => {
      if (this.abort.signal.aborted) return resolve();
      const signal = this.abort.signal;
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      if (wakeable) this.wakeUp = done;
    });
  }

  private setState(next: SinkState): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    this.metrics.sinkHealthy.set({ sink: this.name }, next === 'unhealthy' ? 0 : 1);
    if (next === 'unhealthy')
      this.log.warn('sink_unhealthy', { from, spoolBytes: this.spool.bytes });
    else
      this.log.info(next === 'healthy' ? 'sink_healthy' : 'sink_replaying', {
        from,
        spoolRecords: this.spool.records,
      });
  }

  start(): void {
    this.running ??= this.run().catch((err: unknown) =>
      this.log.error('dispatcher stopped', { err }),
    );
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.abort.signal.aborted) {
      if (this.state === 'unhealthy') {
        if (this.closing) return;
        attempt += 1;
        await this.sleep(
          backoffMs(attempt, this.options.backoff_base_ms, this.options.backoff_max_ms) + 1,
          false,
        );
        if (this.closing || this.abort.signal.aborted) return;
        try {
          await this.sink.probe();
          this.failures = 0;
          attempt = 0;
          this.setState(this.spool.hasData ? 'replaying' : 'healthy');
        } catch {
          // Still down; the next backoff step probes again.
        }
        continue;
      }
      const batch = this.retry ?? (await this.nextBatch());
      this.retry = undefined;
      if (batch === undefined) {
        if (this.closing) return;
        await this.sleep(1000);
        continue;
      }
      const ok = await this.deliver(batch);
      if (ok) {
        attempt = 0;
        continue;
      }
      attempt += 1;
      this.failures += 1;
      if (this.failures >= this.options.unhealthy_after) {
        if (!batch.spooled) this.moveToSpool(batch);
        this.setState('unhealthy');
        attempt = 0;
      } else {
        if (!batch.spooled) this.retry = batch;
        this.inflight = batch.spooled ? undefined : batch;
        await this.sleep(
          backoffMs(attempt, this.options.backoff_base_ms, this.options.backoff_max_ms),
          false,
        );
      }
    }
  }

  /**
   * The failing batch and the whole queue go to the spool tail, in order.
   * TODO: when the spool already holds events spilled over the memory share, these older queued
   * events land behind them, so that sink's order is broken in that one case (delivery is not).
   */
  private moveToSpool(batch: Batch | undefined): void {
    const events = [...(batch?.events ?? []), ...this.queue];
    this.queue = [];
    this.queueBytes = 0;
    this.inflight = undefined;
    let lost = 0;
    for (const event of events) {
      if (!this.spoolEvent(event)) {
        lost += 1;
        this.metrics.sinkDropped.inc({ sink: this.name, reason: 'spool_full' });
        settleAll([event]);
      }
    }
    if (lost > 0) this.log.error('spool_full', { dropped: lost, spoolBytes: this.spool.bytes });
  }

  private async nextBatch(): Promise<Batch | undefined> {
    if (this.queue.length > 0) {
      const first = this.queue[0];
      const age = first === undefined ? 0 : Date.now() - first.meta.receivedAt;
      const small =
        this.queue.length < this.options.batch_events && this.queueBytes < this.options.batch_bytes;
      if (small && !this.closing && age < this.options.linger_ms) {
        await this.sleepUntilFull(this.options.linger_ms - age);
      }
      return this.takeFromQueue();
    }
    if (this.spool.hasData && !this.closing) {
      const spooled = await this.spool.read(this.options.batch_events, this.options.batch_bytes);
      if (spooled === undefined) return undefined;
      const events = spooled.records.map((data) => ({ data, meta: metaFromEnvelope(data) }));
      return { events, bytes: events.reduce((n, e) => n + e.data.length, 0), spooled };
    }
    return undefined;
  }

  private async sleepUntilFull(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    this.lingering = true;
    try {
      while (Date.now() < deadline && !this.batchFull() && !this.closing) {
        await this.sleep(deadline - Date.now());
      }
    } finally {
      this.lingering = false;
    }
  }

  private takeFromQueue(): Batch {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.options.batch_events) {
      const size = this.queue[count]?.data.length ?? 0;
      if (count > 0 && bytes + size > this.options.batch_bytes) break;
      bytes += size;
      count += 1;
    }
    const events = this.queue.splice(0, count);
    this.queueBytes -= bytes;
    const batch = { events, bytes };
    this.inflight = batch;
    return batch;
  }

  private async deliver(batch: Batch): Promise<boolean> {
    const started = process.hrtime.bigint();
    const sink = this.name;
    try {
      const result = await this.sink.write(batch.events);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.sinkDuration.observe({ sink }, seconds);
      this.metrics.sinkBatch.observe({ sink }, batch.events.length);
      if (result.fatal.length > 0) await this.deadLetterEvents(batch, result.fatal);
      const now = Date.now();
      const written = batch.events.length - result.fatal.length;
      this.metrics.sinkWritten.inc({ sink }, written);
      const lag = this.metrics.deliveryLag.labels({ sink });
      for (const event of batch.events) lag.observe((now - event.meta.receivedAt) / 1000);
      if (batch.spooled) {
        await this.spool.commit(batch.spooled);
        this.metrics.spoolReplayed.inc({ sink }, batch.events.length);
      }
      settleAll(batch.events);
      this.inflight = undefined;
      this.failures = 0;
      if (this.state === 'replaying' && !this.spool.hasData) this.setState('healthy');
      return true;
    } catch (err) {
      this.metrics.sinkErrors.inc({ sink, reason: 'retryable' });
      this.logError(err);
      return false;
    }
  }

  private async deadLetterEvents(
    batch: Batch,
    fatal: readonly { index: number; reason: string }[],
  ): Promise<void> {
    const byReason = new Map<string, Buffer[]>();
    for (const { index, reason } of fatal) {
      const event = batch.events[index];
      if (event === undefined) continue;
      let list = byReason.get(reason);
      if (list === undefined) byReason.set(reason, (list = []));
      list.push(event.data);
    }
    for (const [reason, events] of byReason) {
      await this.deadLetter.write(this.name, reason, events);
      this.metrics.sinkErrors.inc({ sink: this.name, reason: 'fatal' });
      this.metrics.deadLetter.inc({ sink: this.name, reason: 'too_large' }, events.length);
      this.log.warn('dead_letter', { reason, events: events.length });
    }
  }

  /** Sink errors are logged at most once per 10 s, with the number suppressed in between. */
  private logError(err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) {
      this.suppressed += 1;
      return;
    }
    this.log.warn('sink write failed', {
      err: (err as Error).message,
      suppressed: this.suppressed,
      state: this.state,
    });
    this.lastErrorLog = now;
    this.suppressed = 0;
  }

  /**
   * Graceful stop (§3.11 step 4): keep flushing the queue until `drainMs`, then put whatever is
   * unacked into the spool and fsync it. Resolves with the number of events spooled.
   */
  async drain(drainMs: number): Promise<number> {
    this.closing = true;
    this.start();
    this.wake();
    // An unhealthy sink takes nothing more before the deadline: its events go to the spool now.
    if (this.state === 'unhealthy') this.abort.abort();
    const before = this.spool.records;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, drainMs);
    });
    // A write stuck in its sink's timeout does not hold the stop: its batch is spooled.
    await Promise.race([this.running, deadline]);
    clearTimeout(timer);
    return this.spoolRest(before);
  }

  /** Second signal: no more waiting, everything in memory goes to the spool. */
  async forceStop(): Promise<number> {
    this.closing = true;
    const before = this.spool.records;
    this.abort.abort();
    return this.spoolRest(before);
  }

  private async spoolRest(before: number): Promise<number> {
    this.abort.abort();
    const pending = this.retry ?? this.inflight;
    this.retry = undefined;
    this.moveToSpool(pending && !pending.spooled ? pending : undefined);
    await this.spool.flush().catch((err: unknown) => this.log.error('spool flush failed', { err }));
    return Math.max(0, this.spool.records - before);
  }

  /** Forced stop: hands back every event still in memory and stops the loop. */
  takeAllSync(): QueuedEvent[] {
    this.closing = true;
    this.abort.abort();
    const pending = this.retry ?? this.inflight;
    const events = [...(pending && !pending.spooled ? pending.events : []), ...this.queue];
    this.retry = undefined;
    this.inflight = undefined;
    this.queue = [];
    this.queueBytes = 0;
    return events;
  }

  /** Resolves when the loop has ended (after drain or a forced stop). */
  async stopped(): Promise<void> {
    await this.running;
  }

  /** Events still only in memory (a failed spool write at shutdown leaves them here). */
  get unpersisted(): number {
    return this.queue.length;
  }

  snapshot(): { state: SinkState; queue_events: number; spool_bytes: number; spool_full: boolean } {
    return {
      state: this.state,
      queue_events: this.queue.length,
      spool_bytes: this.spool.bytes,
      spool_full: this.spool.full,
    };
  }
}
