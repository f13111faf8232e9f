/**
 * The job bus the api, processor and notifier share on Redis. Claims are leases (a deadline in an
 * in-flight ZSET, renewed while the work runs); an expired lease is reclaimed by any live peer;
 * every completion is fenced by the lease token, so a stale owner's result is dropped. The
 * scripts and the key layout are in bus-scripts.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import * as S from './bus-scripts.js';
import { decodeRecord, initialFields, type JobRecord } from './record.js';
import type { AggregationSpec, JobSpec } from './job.js';

export const LEASE_EXPIRED_MESSAGE =
  'Error while downloading file, lease expired before the attempt finished, retriable: true, internal: false';

/** A script sent by SHA, loaded on first NOSCRIPT. */
class Script {
  private readonly sha: string;
  constructor(private readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, 0, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.lua, 0, ...args);
    }
  }
}

const SCRIPTS = {
  ensureAggregation: new Script(S.ENSURE_AGGREGATION),
  enqueue: new Script(S.ENQUEUE),
  claimDownloads: new Script(S.CLAIM_DOWNLOADS),
  renew: new Script(S.RENEW),
  finishDownload: new Script(S.FINISH_DOWNLOAD),
  reclaimDownloads: new Script(S.RECLAIM_DOWNLOADS),
  claimCallbacks: new Script(S.CLAIM_CALLBACKS),
  finishCallback: new Script(S.FINISH_CALLBACK),
  reclaimCallbacks: new Script(S.RECLAIM_CALLBACKS),
  retryCallback: new Script(S.RETRY_CALLBACK),
  claimDeletions: new Script(S.CLAIM_DELETIONS),
};

/** A job held under a lease. `record` is undefined when the entry's record was missing. */
export interface Claim {
  id: string;
  token: string;
  record: JobRecord | undefined;
}

export type DownloadOutcome = 'success' | 'failed' | 'retry' | 'requeue';
export type CallbackOutcome = 'delivered' | 'failed' | 'retry' | 'requeue';

export interface AggregationInfo {
  limit: number;
  proxy: string;
}

/** Queue depths, for the `downloader_queue_jobs` gauge. */
export interface QueueDepths {
  download_waiting: number;
  download_in_flight: number;
  callback_waiting: number;
  callback_in_flight: number;
  callback_failed: number;
  deletion_scheduled: number;
}

/** The limit a job runs with when its aggregation record is missing. */
export const DEFAULT_AGGREGATION_LIMIT = 4;

function decodeClaims(raw: unknown): Claim[] {
  return (raw as [string, string, string[]][]).map(([id, token, fields]) => ({
    id,
    token,
    record: token === '' ? undefined : decodeRecord(fields),
  }));
}

export class JobBus {
  /** Unique per process: lease tokens start with it. */
  readonly instanceId = randomBytes(6).toString('hex');
  private tokenSeq = 0;

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
  ) {}

  key(name: string): string {
    return `${this.prefix}${name}`;
  }

  private tokenBase(): string {
    this.tokenSeq += 1;
    return `${this.instanceId}.${this.tokenSeq}`;
  }

  // ---- api ----

  async jobExists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.key(`job:${id}`))) === 1;
  }

  /** Creates the aggregation record if absent; true when created. */
  async ensureAggregation(aggr: AggregationSpec): Promise<boolean> {
    const created = await SCRIPTS.ensureAggregation.run(this.redis, [
      this.prefix,
      aggr.id,
      aggr.limit,
      aggr.proxy,
    ]);
    return created === 1;
  }

  /** Writes the record and its ready entry in one step; false when the id is taken. */
  async enqueue(spec: JobSpec, downloadUrl: string, nowMs = Date.now()): Promise<boolean> {
    const fields = initialFields(spec, downloadUrl, nowMs);
    const done = await SCRIPTS.enqueue.run(this.redis, [
      this.prefix,
      spec.id,
      spec.aggr_id,
      nowMs,
      ...fields,
    ]);
    return done === 1;
  }

  async getRecord(id: string): Promise<JobRecord | undefined> {
    return decodeRecord(await this.redis.hgetall(this.key(`job:${id}`)));
  }

  async retryCallback(
    id: string,
  ): Promise<
    { kind: 'missing' } | { kind: 'state'; state: string } | { kind: 'ok'; queued: boolean }
  > {
    const [kind, value] = (await SCRIPTS.retryCallback.run(this.redis, [
      this.prefix,
      id,
      Date.now(),
    ])) as [string, string | undefined];
    if (kind === 'missing') return { kind };
    if (kind === 'state') return { kind, state: value ?? '' };
    return { kind: 'ok', queued: value === '1' };
  }

  /** Aggregations with waiting jobs (ready plus delayed), for the dashboard. */
  async waitingByAggregation(): Promise<{ aggr: string; size: number }[]> {
    const aggrs = await this.redis.zrange(this.key('active'), 0, -1);
    if (aggrs.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const aggr of aggrs) pipeline.zcard(this.key(`ready:${aggr}`));
    const results = (await pipeline.exec()) ?? [];
    const out: { aggr: string; size: number }[] = [];
    results.forEach(([err, size], i) => {
      if (err) throw err;
      if (typeof size === 'number' && size > 0) out.push({ aggr: aggrs[i], size });
    });
    return out;
  }

  async queueDepths(): Promise<QueueDepths> {
    const waiting = await this.waitingByAggregation();
    const [inflight, cbReady, cbInflight, failed, deletions] = await Promise.all([
      this.redis.zcard(this.key('inflight')),
      this.redis.zcard(this.key('cb:ready')),
      this.redis.zcard(this.key('cb:inflight')),
      this.redis.scard(this.key('cb:failed')),
      this.redis.zcard(this.key('deletions')),
    ]);
    return {
      download_waiting: waiting.reduce((sum, w) => sum + w.size, 0),
      download_in_flight: inflight,
      callback_waiting: cbReady,
      callback_in_flight: cbInflight,
      callback_failed: failed,
      deletion_scheduled: deletions,
    };
  }

  // ---- processor ----

  /** Aggregations whose earliest job is due, oldest first. */
  async dueAggregations(nowMs = Date.now(), max = 1000): Promise<string[]> {
    return this.redis.zrangebyscore(this.key('active'), '-inf', nowMs, 'LIMIT', 0, max);
  }

  async aggregation(aggr: string): Promise<AggregationInfo> {
    const [limit, proxy] = await this.redis.hmget(this.key(`aggr:${aggr}`), 'limit', 'proxy');
    const parsed = Number(limit);
    return {
      limit: Number.isInteger(parsed) && parsed > 0 ? parsed : DEFAULT_AGGREGATION_LIMIT,
      proxy: proxy ?? '',
    };
  }

  async claimDownloads(aggr: string, count: number, leaseMs: number): Promise<Claim[]> {
    const now = Date.now();
    const raw = await SCRIPTS.claimDownloads.run(this.redis, [
      this.prefix,
      aggr,
      now,
      count,
      now + leaseMs,
      this.tokenBase(),
    ]);
    return decodeClaims(raw);
  }

  /** Extends leases; returns the ids whose lease was lost. */
  async renew(
    kind: 'download' | 'callback',
    held: { id: string; token: string }[],
    leaseMs: number,
  ): Promise<string[]> {
    if (held.length === 0) return [];
    const deadline = Date.now() + leaseMs;
    const tag = kind === 'download' ? '' : 'cb:';
    const results = await Promise.all(
      held.map((h) => SCRIPTS.renew.run(this.redis, [this.prefix, h.id, h.token, deadline, tag])),
    );
    return held.filter((_h, i) => results[i] !== 1).map((h) => h.id);
  }

  /** Whether `token` still holds the job's download lease. */
  async holdsLease(id: string, token: string): Promise<boolean> {
    return (await this.redis.hget(this.key(`job:${id}`), 'lease')) === token;
  }

  /** Completes an attempt; false when the lease was lost and the result must be dropped. */
  async finishDownload(
    claim: Claim,
    outcome: DownloadOutcome,
    fields: Record<string, string | number>,
    dueMs = Date.now(),
  ): Promise<boolean> {
    const flat = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    const done = await SCRIPTS.finishDownload.run(this.redis, [
      this.prefix,
      claim.id,
      claim.token,
      Date.now(),
      outcome,
      Math.round(dueMs),
      ...flat,
    ]);
    return done === 1;
  }

  async reclaimDownloads(defaultMaxRetries: number): Promise<{ id: string; outcome: string }[]> {
    const raw = (await SCRIPTS.reclaimDownloads.run(this.redis, [
      this.prefix,
      Date.now(),
      defaultMaxRetries,
      LEASE_EXPIRED_MESSAGE,
    ])) as [string, string][];
    return raw.map(([id, outcome]) => ({ id, outcome }));
  }

  async claimDeletions(count: number, leaseMs: number): Promise<string[]> {
    const now = Date.now();
    return (await SCRIPTS.claimDeletions.run(this.redis, [
      this.prefix,
      now,
      count,
      now + leaseMs,
    ])) as string[];
  }

  async finishDeletion(id: string, ok: boolean, retryAtMs: number): Promise<void> {
    if (ok) await this.redis.zrem(this.key('deletions'), id);
    else await this.redis.zadd(this.key('deletions'), retryAtMs, id);
  }

  // ---- notifier ----

  async claimCallbacks(count: number, leaseMs: number): Promise<Claim[]> {
    const now = Date.now();
    const raw = await SCRIPTS.claimCallbacks.run(this.redis, [
      this.prefix,
      now,
      count,
      now + leaseMs,
      this.tokenBase(),
    ]);
    return decodeClaims(raw);
  }

  async finishCallback(
    claim: Claim,
    outcome: CallbackOutcome,
    options: { dueMs?: number; meta?: string; deleteAtMs?: number } = {},
  ): Promise<boolean> {
    const now = Date.now();
    const done = await SCRIPTS.finishCallback.run(this.redis, [
      this.prefix,
      claim.id,
      claim.token,
      now,
      outcome,
      Math.round(options.dueMs ?? now),
      options.meta ?? '',
      Math.round(options.deleteAtMs ?? now),
    ]);
    return done === 1;
  }

  async reclaimCallbacks(): Promise<string[]> {
    return (await SCRIPTS.reclaimCallbacks.run(this.redis, [this.prefix, Date.now()])) as string[];
  }

  /** When the next callback is due, or undefined when none waits. */
  async nextCallbackDueMs(): Promise<number | undefined> {
    const first = await this.redis.zrange(this.key('cb:ready'), 0, 0, 'WITHSCORES');
    return first[1] === undefined ? undefined : Number(first[1]);
  }

  // ---- stats ----

  async writeStats(
    component: string,
    instance: string,
    snapshot: Record<string, number>,
    ttlMs: number,
  ): Promise<void> {
    await this.redis.set(
      this.key(`stats:${component}:${instance}`),
      JSON.stringify(snapshot),
      'PX',
      ttlMs,
    );
  }

  async deleteStats(component: string, instance: string): Promise<void> {
    await this.redis.del(this.key(`stats:${component}:${instance}`));
  }

  /** Sums the live instances' snapshots; undefined when none is alive. */
  async mergedStats(component: string): Promise<Record<string, number> | undefined> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(
        cursor,
        'MATCH',
        this.key(`stats:${component}:*`),
        'COUNT',
        200,
      );
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length === 0) return undefined;
    const values = await this.redis.mget(...keys);
    const merged: Record<string, number> = {};
    let alive = 0;
    for (const text of values) {
      if (text === null) continue;
      alive += 1;
      for (const [k, v] of Object.entries(JSON.parse(text) as Record<string, number>)) {
        if (k === 'alive') continue;
        merged[k] = (merged[k] ?? 0) + Math.trunc(v);
      }
    }
    if (alive === 0) return undefined;
    merged.alive = alive;
    return merged;
  }
}
