/**
 * The notifier's engine: claims due callbacks under a lease, sends each through its backend, and
 * records the outcome in one script: delivered (record deleted, file deletion scheduled), retried
 * later, or `Failed` until an operator calls `/retry`.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../common/logger.js';
import { pollLoop, sleep, type StatsRecorder } from '../boot.js';
import type { CallbackOutcome, Claim, JobBus } from '../bus.js';
import type { DownloaderConfig } from '../config.js';
import { formatJob } from '../job.js';
import type { JobRecord } from '../record.js';
import { DeliveryError, type Backend } from './backends.js';
import type { BackendLabel, NotifierMetrics } from './metrics.js';
import { buildPayload } from './payload.js';

const POLL_MS = 250;
const RECLAIM_MS = 1000;
/** Attempts before a callback stays Failed. */
const MAX_ATTEMPTS = 2;

export interface NotifierDeps {
  config: DownloaderConfig;
  bus: JobBus;
  logger: Logger;
  metrics: NotifierMetrics;
  stats: StatsRecorder;
  backends: { http: Backend | undefined; kafka: Backend | undefined };
  subscriber: Redis;
}

interface Held {
  claim: Claim;
  abort: AbortController;
  done: Promise<void>;
}

class UndefinedBackendError extends Error {}

export class Notifier {
  private readonly held = new Map<string, Held>();
  private readonly stopping = new AbortController();
  private closing = false;
  private wake: (() => void) | undefined;
  private loops: Promise<void>[] = [];
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: NotifierDeps) {}

  get inFlight(): number {
    return this.held.size;
  }

  async start(): Promise<void> {
    this.deps.subscriber.on('message', () => this.wake?.());
    await this.deps.subscriber.subscribe(this.deps.bus.key('cb:doorbell'));
    const n = this.deps.config.notifier;
    this.renewTimer = setInterval(
      () => this.renewLeases(),
      Math.max(50, n.visibilityTimeoutMs / 3),
    );
    this.renewTimer.unref();
    this.loops = [
      this.loop('claim', POLL_MS, () => this.claimRound()),
      this.loop('reclaim', RECLAIM_MS, () => this.reclaimRound()),
    ];
  }

  private loop(name: string, everyMs: number, round: () => Promise<void>): Promise<void> {
    return pollLoop({
      name,
      everyMs,
      round,
      closing: () => this.closing,
      stopping: this.stopping.signal,
      logger: this.deps.logger,
      onError: () => this.deps.metrics.redisErrors.inc(),
      armWake: name === 'claim' ? (wake) => (this.wake = wake) : undefined,
    });
  }

  private async claimRound(): Promise<void> {
    const n = this.deps.config.notifier;
    const free = n.concurrency - this.held.size;
    if (free <= 0) return;
    const claims = await this.deps.bus.claimCallbacks(free, n.visibilityTimeoutMs);
    for (const claim of claims) this.begin(claim);
  }

  private begin(claim: Claim): void {
    if (!claim.record) {
      this.deps.logger.warn('missing_record', { job_id: claim.id });
      return;
    }
    const abort = new AbortController();
    const held: Held = { claim, abort, done: Promise.resolve() };
    this.held.set(claim.id, held);
    this.deps.metrics.inFlight.set(this.held.size);
    held.done = this.deliver(claim, claim.record, abort.signal).finally(() => {
      this.held.delete(claim.id);
      this.deps.metrics.inFlight.set(this.held.size);
      this.wake?.();
    });
  }

  private route(record: JobRecord): { backend: Backend; label: BackendLabel; destination: string } {
    const spec = record.spec;
    const { http, kafka } = this.deps.backends;
    if (spec.callback_url !== undefined && http)
      return { backend: http, label: 'http', destination: spec.callback_url };
    if (spec.callback_type === 'http' && http)
      return { backend: http, label: 'http', destination: spec.callback_dst };
    if (spec.callback_type === 'kafka' && kafka)
      return { backend: kafka, label: 'kafka', destination: spec.callback_dst };
    throw new UndefinedBackendError(
      `Undefined backend ${spec.callback_url !== undefined ? 'http' : spec.callback_type} for job ${formatJob(spec, record.downloadUrl, record.imageSize)}`,
    );
  }

  private async deliver(claim: Claim, record: JobRecord, signal: AbortSignal): Promise<void> {
    const log = this.deps.logger;
    if (record.downloadState !== 'Success' && record.downloadState !== 'Failed') {
      await this.finish(
        claim,
        'failed',
        `Invalid job download state: '${record.downloadState}'`,
        'undefined',
      );
      return;
    }
    let label: BackendLabel = 'undefined';
    const started = Date.now();
    try {
      const target = this.route(record);
      label = target.label;
      await target.backend.send(target.destination, buildPayload(record), signal);
    } catch (err) {
      if (signal.aborted && this.closing) {
        await this.finish(claim, 'requeue', '', label);
        return;
      }
      if (err instanceof UndefinedBackendError) this.deps.stats.add('undefinedBackendWithCallback');
      if (err instanceof DeliveryError && err.unknownTopic)
        this.deps.stats.add('unknownTopicOrPartition');
      const message = err instanceof Error ? err.message : String(err);
      if (record.callbackCount >= MAX_ATTEMPTS) {
        await this.finish(claim, 'failed', message, label);
        this.deps.stats.add('failedCallbacks');
        log.warn('callback_failed', {
          job_id: claim.id,
          attempt: record.callbackCount,
          error: message,
        });
      } else {
        await this.finish(
          claim,
          'retry',
          message,
          label,
          Date.now() + record.callbackCount * this.deps.config.units.callbackRetryMs,
        );
        log.info('callback_retry', {
          job_id: claim.id,
          attempt: record.callbackCount,
          error: message,
        });
      }
      return;
    } finally {
      this.deps.metrics.sendDuration.observe({ backend: label }, (Date.now() - started) / 1000);
    }
    if (await this.finish(claim, 'delivered', '', label)) {
      this.deps.stats.add('successfulCallbacks');
      if (record.finishedAtMs > 0)
        this.deps.metrics.latency.observe((Date.now() - record.finishedAtMs) / 1000);
      log.debug('callback_delivered', { job_id: claim.id, backend: label });
    }
  }

  private async finish(
    claim: Claim,
    outcome: CallbackOutcome,
    meta: string,
    label: BackendLabel,
    dueMs?: number,
  ): Promise<boolean> {
    try {
      const done = await this.deps.bus.finishCallback(claim, outcome, {
        meta,
        dueMs,
        deleteAtMs: Date.now() + this.deps.config.notifier.deletionIntervalMs,
      });
      if (done && outcome !== 'requeue')
        this.deps.metrics.callbacks.inc({ backend: label, outcome });
      if (!done) this.deps.logger.warn('lease_lost', { job_id: claim.id });
      return done;
    } catch (err) {
      this.deps.metrics.redisErrors.inc();
      this.deps.logger.error('finish_failed', {
        job_id: claim.id,
        outcome,
        err: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  }

  private renewLeases(): void {
    const held = [...this.held.values()].map((h) => ({ id: h.claim.id, token: h.claim.token }));
    this.deps.bus
      .renew('callback', held, this.deps.config.notifier.visibilityTimeoutMs)
      .catch((err: unknown) => {
        this.deps.metrics.redisErrors.inc();
        this.deps.logger.warn('renew_failed', {
          err: err instanceof Error ? err.message : String(err),
        });
      });
  }

  private async reclaimRound(): Promise<void> {
    const ids = await this.deps.bus.reclaimCallbacks();
    for (const id of ids) {
      this.deps.metrics.callbacks.inc({ backend: 'undefined', outcome: 'reclaimed' });
      this.deps.logger.warn('callback_reclaimed', { job_id: id });
    }
  }

  /** Stops claiming, gives deliveries `graceMs`, then aborts and requeues the rest. */
  async drain(graceMs: number): Promise<{ finished: number; requeued: number }> {
    this.closing = true;
    this.stopping.abort();
    await Promise.allSettled(this.loops);
    const before = this.held.size;
    const deadline = Date.now() + graceMs;
    while (this.held.size > 0 && Date.now() < deadline) await sleep(50);
    if (this.renewTimer) clearInterval(this.renewTimer);
    const left = [...this.held.values()];
    for (const h of left) h.abort.abort();
    await Promise.allSettled(left.map((h) => h.done));
    return { finished: before - left.length, requeued: left.length };
  }
}
