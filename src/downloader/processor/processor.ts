/**
 * The processor's engine: discovers aggregations with due jobs, opens a lane per aggregation
 * whose limiter is shared through Redis with every other processor, claims only what a lane can
 * start now, runs the attempts, renews their leases, reclaims expired ones, and reaps files whose
 * callbacks were delivered.
 */
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type Bottleneck from 'bottleneck';
import type { Redis } from 'ioredis';
import type { Logger } from '../../common/logger.js';
import { VERSION } from '../../common/version.js';
import { pollLoop, sleep, type StatsRecorder } from '../boot.js';
import type { Claim, JobBus } from '../bus.js';
import type { DownloaderConfig } from '../config.js';
import type { JobSpec } from '../job.js';
import { AttemptAbortedError, runAttempt, type AttemptResult } from './download.js';
import { DownloadError, internalDelayMs, retryDelayMs } from './errors.js';
import type { LimiterGroup } from './limiter.js';
import { GcHint } from './gc-hint.js';
import type { ProcessorMetrics } from './metrics.js';
import type { SsrfGuard } from './ssrf.js';
import { deleteStored, ShardDirs, storeFile } from './storage.js';

/** Default retries of a job without `max_retries`. */
const DEFAULT_MAX_RETRIES = 2;
const DISCOVERY_MS = 250;
const LANE_IDLE_MS = 5000;
const RECLAIM_MS = 1000;
const REAPER_MS = 1000;
const REAPER_RETRY_MS = 60_000;
/** Aggregations whose free slots are read, and then claimed, in one go (one round trip each). */
const CLAIM_BATCH = 64;

interface Lane {
  aggr: string;
  limiter: Bottleneck;
  limit: number;
  proxy: string;
  /** Jobs of this lane claimed here and not finished yet. */
  local: number;
  /** Of those, the ones whose attempt started. */
  running: number;
  idleTimer: NodeJS.Timeout | undefined;
}

interface Held {
  claim: Claim;
  abort: AbortController;
  done: Promise<void>;
}

export interface ProcessorDeps {
  config: DownloaderConfig;
  bus: JobBus;
  logger: Logger;
  metrics: ProcessorMetrics;
  stats: StatsRecorder;
  limiters: LimiterGroup;
  guard: SsrfGuard | undefined;
  /** A connection for the doorbell subscription. */
  subscriber: Redis;
  isDiskPaused: () => boolean;
}

export class Processor {
  private readonly lanes = new Map<string, Lane>();
  private readonly held = new Map<string, Held>();
  private readonly shards = new ShardDirs();
  private readonly gcHint = new GcHint();
  private readonly stopping = new AbortController();
  private closing = false;
  private wake: (() => void) | undefined;
  private rotation = 0;
  private loops: Promise<void>[] = [];
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ProcessorDeps) {}

  get inFlight(): number {
    return this.held.size;
  }

  async start(): Promise<void> {
    const { subscriber, bus } = this.deps;
    subscriber.on('message', () => this.nudge());
    await subscriber.subscribe(bus.key('doorbell'));
    const p = this.deps.config.processor;
    this.renewTimer = setInterval(
      () => this.renewLeases(),
      Math.max(50, p.visibilityTimeoutMs / 3),
    );
    this.renewTimer.unref();
    this.loops = [
      this.loop('claim', DISCOVERY_MS, () => this.claimRound()),
      this.loop('reclaim', RECLAIM_MS, () => this.reclaimRound()),
      this.loop('reaper', REAPER_MS, () => this.reapRound()),
    ];
  }

  private nudge(): void {
    this.wake?.();
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

  // ---- claiming ----

  private async claimRound(): Promise<void> {
    const p = this.deps.config.processor;
    if (this.deps.isDiskPaused()) return;
    const aggrs = await this.deps.bus.dueAggregations();
    if (aggrs.length === 0) return;
    const start = this.rotation++ % aggrs.length;
    const order = [...aggrs.slice(start), ...aggrs.slice(0, start)];
    for (let i = 0; i < order.length && !this.closing; i += CLAIM_BATCH) {
      if (this.held.size >= p.maxInFlight) return;
      await this.claimBatch(order.slice(i, i + CLAIM_BATCH));
    }
  }

  // TODO: each small job still costs three bottleneck scripts (submit, register, free) besides
  // the claim, the lease check and the finish, and bottleneck runs a limiter's submit and
  // register one job at a time, so a lane that claims eight jobs starts the last one sixteen
  // round trips later; the small-file benchmark stays below its bar while this is so.
  /**
   * Claims for several aggregations at once: their free slots are read concurrently, shared out
   * in rotation order within `max_in_flight`, then claimed concurrently, so a round costs the same
   * few round trips however many aggregations are due.
   */
  private async claimBatch(aggrs: string[]): Promise<void> {
    const p = this.deps.config.processor;
    const slots = await Promise.all(aggrs.map((aggr) => this.freeSlots(aggr)));
    let room = p.maxInFlight - this.held.size;
    const claims: Promise<void>[] = [];
    for (const slot of slots) {
      const count = Math.min(slot?.free ?? 0, room);
      if (!slot || count <= 0) continue;
      room -= count;
      claims.push(
        this.deps.bus
          .claimDownloads(slot.lane.aggr, count, p.visibilityTimeoutMs)
          .then((claimed) => {
            for (const claim of claimed) this.begin(claim, slot.lane);
          }),
      );
    }
    // Every claim is settled before the round ends, so the next round counts its jobs.
    const failed = (await Promise.allSettled(claims)).find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The lane of `aggr` and how many of its jobs can start now; undefined when none can. */
  private async freeSlots(aggr: string): Promise<{ lane: Lane; free: number } | undefined> {
    // Every finished job triggers a round over all aggregations. The limit and proxy of an
    // aggregation cannot change while jobs of it exist (its record lives as long as its jobs), so
    // a lane holding jobs here keeps them without re-reading Redis, and one whose own jobs fill
    // its limit has no free slot whatever its peers run: it is skipped without any round trip.
    const known = this.lanes.get(aggr);
    if (known && known.local >= known.limit) return undefined;
    const lane = known && known.local > 0 ? known : await this.openLane(aggr);
    const clusterRunning = await lane.limiter.running();
    const queuedHere = lane.local - lane.running;
    const free = lane.limit - clusterRunning - queuedHere;
    return free > 0 ? { lane, free } : undefined;
  }

  private async openLane(aggr: string): Promise<Lane> {
    const info = await this.deps.bus.aggregation(aggr);
    let lane = this.lanes.get(aggr);
    if (!lane) {
      lane = {
        aggr,
        limiter: this.deps.limiters.limiter(aggr),
        limit: 0,
        proxy: info.proxy,
        local: 0,
        running: 0,
        idleTimer: undefined,
      };
      this.lanes.set(aggr, lane);
      this.deps.stats.add('spawnedWorkerPools');
      this.deps.stats.set('workerPools', this.lanes.size);
      this.deps.stats.peak('maxWorkerPools', this.lanes.size);
      this.deps.metrics.lanes.set(this.lanes.size);
      this.deps.logger.info('lane_open', { aggregation_id: aggr, aggregation_limit: info.limit });
    }
    if (lane.limit !== info.limit) {
      this.deps.limiters.apply(lane.limiter, info.limit);
      lane.limit = info.limit;
    }
    lane.proxy = info.proxy;
    return lane;
  }

  private laneIdle(lane: Lane): void {
    if (lane.local > 0 || lane.idleTimer) return;
    lane.idleTimer = setTimeout(() => {
      lane.idleTimer = undefined;
      if (lane.local > 0) return;
      this.lanes.delete(lane.aggr);
      this.deps.stats.set('workerPools', this.lanes.size);
      this.deps.metrics.lanes.set(this.lanes.size);
      this.deps.logger.info('lane_close', { aggregation_id: lane.aggr });
    }, LANE_IDLE_MS);
    lane.idleTimer.unref();
  }

  private begin(claim: Claim, lane: Lane): void {
    if (!claim.record) {
      this.deps.logger.warn('missing_record', { job_id: claim.id, aggregation_id: lane.aggr });
      this.deps.metrics.errors.inc({ kind: 'internal' });
      return;
    }
    if (lane.idleTimer) {
      clearTimeout(lane.idleTimer);
      lane.idleTimer = undefined;
    }
    lane.local += 1;
    const abort = new AbortController();
    const held: Held = { claim, abort, done: Promise.resolve() };
    this.held.set(claim.id, held);
    this.workersChanged();
    held.done = this.schedule(claim, lane, abort.signal).finally(() => {
      this.held.delete(claim.id);
      lane.local -= 1;
      this.workersChanged();
      this.laneIdle(lane);
      this.nudge();
    });
  }

  private workersChanged(): void {
    this.deps.stats.set('workers', this.held.size);
    this.deps.stats.peak('maxWorkers', this.held.size);
    this.deps.metrics.inFlight.set(this.held.size);
  }

  private attemptMs(spec: JobSpec): number {
    return spec.download_timeout !== null
      ? spec.download_timeout * 1000
      : this.deps.config.processor.timeouts.attempt_ms;
  }

  private async schedule(claim: Claim, lane: Lane, signal: AbortSignal): Promise<void> {
    const spec = (claim.record as NonNullable<Claim['record']>).spec;
    const attemptMs = this.attemptMs(spec);
    try {
      await lane.limiter.schedule({ expiration: attemptMs + 30_000 }, async () => {
        lane.running += 1;
        try {
          await this.attempt(claim, lane, attemptMs, signal);
        } finally {
          lane.running -= 1;
        }
      });
    } catch (err) {
      // The limiter itself failed (Redis down, or the job expired in bottleneck): the attempt did
      // not run or its result is already recorded; put the job back uncounted if still held.
      if (err instanceof DownloadError) return;
      this.deps.logger.warn('limiter_error', {
        job_id: claim.id,
        err: err instanceof Error ? err.message : String(err),
      });
      await this.finish(claim, 'requeue', {}, Date.now() + 1000).catch(() => undefined);
    }
  }

  // ---- one attempt ----

  private headersFor(spec: JobSpec): Record<string, string> {
    const merged: Record<string, string> = {};
    const add = (headers: Record<string, string>): void => {
      for (const [key, value] of Object.entries(headers)) {
        for (const existing of Object.keys(merged)) {
          if (existing.toLowerCase() === key.toLowerCase()) delete merged[existing];
        }
        merged[key] = value;
      }
    };
    add(this.deps.config.processor.requestHeaders);
    add(spec.request_headers);
    if (!Object.keys(merged).some((k) => k.toLowerCase() === 'user-agent')) {
      merged['User-Agent'] = `skroutz-infra-downloader/${VERSION}`;
    }
    return merged;
  }

  private async attempt(
    claim: Claim,
    lane: Lane,
    attemptMs: number,
    signal: AbortSignal,
  ): Promise<void> {
    const record = claim.record as NonNullable<Claim['record']>;
    const spec = record.spec;
    const p = this.deps.config.processor;
    const started = Date.now();
    const tmpPath = join(p.storageDir, `${claim.id}.${randomBytes(4).toString('hex')}.tmp`);
    this.deps.stats.add('spawnedWorkers');
    try {
      if (spec.s3_bucket !== '') {
        throw new DownloadError(
          'storing file to job specified AWS S3 bucket',
          'S3 storage is not supported',
          {
            retriable: false,
            kind: 'storage',
          },
        );
      }
      const result = await runAttempt({
        url: spec.url,
        headers: this.headersFor(spec),
        proxy: lane.proxy,
        timeouts: p.timeouts,
        attemptMs,
        maxBytes: p.maxDownloadBytes,
        tmpPath,
        mimePattern: spec.mime_type,
        extractImageSize: spec.extract_image_size,
        guard: this.deps.guard,
        retryAfterMaxS: p.retryAfterMaxS,
        signal,
        // Fencing: a stale owner must never touch the final file, so the lease is checked before
        // the store; asked while the temp file is synced, it costs no time of its own.
        fence: () => this.deps.bus.holdsLease(claim.id, claim.token),
        gcHint: this.gcHint,
      });
      await this.succeed(claim, result, tmpPath);
    } catch (err) {
      await this.failed(claim, record, err);
    } finally {
      this.deps.metrics.duration.observe((Date.now() - started) / 1000);
    }
  }

  private countResponse(code: number, stat: string | undefined): void {
    if (code > 0) this.deps.metrics.responses.inc({ code: String(code) });
    if (stat !== undefined) this.deps.stats.add(`download.response.${stat}`);
  }

  private async succeed(claim: Claim, result: AttemptResult, tmpPath: string): Promise<void> {
    const p = this.deps.config.processor;
    this.countResponse(result.responseCode, String(result.responseCode));
    this.deps.metrics.bytes.inc(result.size);
    if (!result.leaseHeld) return this.stale(claim, tmpPath);
    await storeFile(p.rootDir, claim.id, tmpPath, this.shards);
    const done = await this.finish(claim, 'success', {
      code: result.responseCode,
      sha256: result.sha256,
      size: result.size,
      image_size: result.imageSize,
      download_url: p.downloadUrl,
      meta: '',
      internal: 0,
    });
    if (!done) return this.stale(claim, undefined);
    this.deps.metrics.attempts.inc({ outcome: 'success' });
    this.deps.logger.info('download_success', {
      job_id: claim.id,
      aggregation_id: claim.record?.spec.aggr_id,
      attempt: claim.record?.downloadCount,
      code: result.responseCode,
    });
  }

  private stale(claim: Claim, tmpPath: string | undefined): void {
    this.deps.logger.warn('lease_lost', { job_id: claim.id });
    if (tmpPath) unlink(tmpPath).catch(() => undefined);
  }

  private async failed(
    claim: Claim,
    record: NonNullable<Claim['record']>,
    err: unknown,
  ): Promise<void> {
    const log = this.deps.logger;
    if (err instanceof AttemptAbortedError) {
      if (!this.closing) return this.stale(claim, undefined);
      await this.finish(claim, 'requeue', {});
      this.deps.metrics.attempts.inc({ outcome: 'shutdown_requeue' });
      return;
    }
    const error =
      err instanceof DownloadError
        ? err
        : new DownloadError('processing job', err instanceof Error ? err.message : String(err), {
            retriable: true,
            internal: true,
            kind: 'internal',
          });
    this.countResponse(error.responseCode, error.stat);
    this.deps.metrics.errors.inc({ kind: error.kind });
    if (error.kind === 'proxy') this.deps.stats.add('invalidProxies');
    const fields = {
      job_id: claim.id,
      aggregation_id: record.spec.aggr_id,
      attempt: record.downloadCount,
      code: error.responseCode,
      error: error.message,
    };
    const units = this.deps.config.units;
    if (error.internal) {
      this.deps.stats.add('failures');
      const k = record.internalFailures + 1;
      await this.finish(
        claim,
        'requeue',
        { internal: k, meta: error.message },
        Date.now() + internalDelayMs(k, units.internalRetryMs),
      );
      this.deps.metrics.attempts.inc({ outcome: 'internal_error' });
      log.warn('internal_error', fields);
      return;
    }
    const maxRetries = record.spec.max_retries ?? DEFAULT_MAX_RETRIES;
    if (error.retriable && record.downloadCount <= maxRetries) {
      const due =
        Date.now() + retryDelayMs(record.downloadCount, units.downloadRetryMs, error.retryAfterMs);
      await this.finish(
        claim,
        'retry',
        { meta: error.message, code: error.responseCode, internal: 0 },
        due,
      );
      this.deps.metrics.attempts.inc({ outcome: 'retry' });
      log.info('download_retry', fields);
      return;
    }
    await this.finish(claim, 'failed', {
      meta: error.message,
      code: error.responseCode,
      download_url: '',
      sha256: '',
      internal: 0,
    });
    this.deps.metrics.attempts.inc({ outcome: 'failed' });
    log.info('download_failed', fields);
  }

  private async finish(
    claim: Claim,
    outcome: 'success' | 'failed' | 'retry' | 'requeue',
    fields: Record<string, string | number>,
    dueMs = Date.now(),
  ): Promise<boolean> {
    try {
      return await this.deps.bus.finishDownload(claim, outcome, fields, dueMs);
    } catch (err) {
      // The lease keeps the job: once it expires a peer (or this process) reclaims it.
      this.deps.metrics.redisErrors.inc();
      this.deps.logger.error('finish_failed', {
        job_id: claim.id,
        outcome,
        err: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  }

  // ---- leases ----

  private renewLeases(): void {
    const held = [...this.held.values()].map((h) => ({ id: h.claim.id, token: h.claim.token }));
    this.deps.bus
      .renew('download', held, this.deps.config.processor.visibilityTimeoutMs)
      .then((lost) => {
        for (const id of lost) {
          this.deps.logger.warn('lease_lost', { job_id: id });
          this.held.get(id)?.abort.abort();
        }
      })
      .catch((err: unknown) => {
        this.deps.metrics.redisErrors.inc();
        this.deps.logger.warn('renew_failed', {
          err: err instanceof Error ? err.message : String(err),
        });
      });
  }

  private async reclaimRound(): Promise<void> {
    const reclaimed = await this.deps.bus.reclaimDownloads(DEFAULT_MAX_RETRIES);
    for (const { id, outcome } of reclaimed) {
      this.deps.metrics.attempts.inc({ outcome: 'reclaimed' });
      this.deps.logger.warn('job_reclaimed', { job_id: id, outcome });
    }
    if (reclaimed.length > 0) this.nudge();
  }

  // ---- reaper ----

  private async reapRound(): Promise<void> {
    const ids = await this.deps.bus.claimDeletions(50, REAPER_RETRY_MS);
    for (const id of ids) {
      let ok = true;
      try {
        await deleteStored(this.deps.config.processor.rootDir, id);
      } catch (err) {
        ok = false;
        this.deps.logger.warn('reaper_failed', {
          job_id: id,
          err: err instanceof Error ? err.message : String(err),
        });
      }
      await this.deps.bus.finishDeletion(id, ok, Date.now() + REAPER_RETRY_MS);
      this.deps.stats.add(ok ? 'reaperSuccessfulDeletions' : 'reaperFailures');
      this.deps.metrics.reaper.inc({ result: ok ? 'success' : 'failure' });
    }
  }

  // ---- shutdown ----

  /** Stops claiming, gives in-flight attempts `graceMs`, then aborts and requeues the rest. */
  async drain(graceMs: number): Promise<{ finished: number; requeued: number }> {
    this.closing = true;
    this.stopping.abort();
    if (this.renewTimer) clearInterval(this.renewTimer);
    await Promise.allSettled(this.loops);
    const before = this.held.size;
    const deadline = Date.now() + graceMs;
    const keepRenewing = setInterval(
      () => this.renewLeases(),
      Math.max(50, this.deps.config.processor.visibilityTimeoutMs / 3),
    );
    while (this.held.size > 0 && Date.now() < deadline) await sleep(50);
    const left = [...this.held.values()];
    for (const h of left) h.abort.abort();
    await Promise.allSettled(left.map((h) => h.done));
    clearInterval(keepRenewing);
    for (const lane of this.lanes.values()) if (lane.idleTimer) clearTimeout(lane.idleTimer);
    return { finished: before - left.length, requeued: left.length };
  }
}
