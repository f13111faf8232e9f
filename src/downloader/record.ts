/**
 * The job record as the three components exchange it through Redis (one HASH per job). The
 * request lives in `spec` as JSON and never changes; the state fields are flat so that the bus
 * scripts can update them one by one.
 */
import type { JobSpec } from './job.js';

/** State strings of the original, which `/retry` prints. */
export type JobState = '' | 'Pending' | 'InProgress' | 'Success' | 'Failed';

export interface JobRecord {
  spec: JobSpec;
  downloadState: JobState;
  downloadCount: number;
  downloadMeta: string;
  responseCode: number;
  imageSize: string;
  /** The configured base URL; the full URL is derived each time a payload is built. */
  downloadUrl: string;
  sha256: string;
  size: number;
  callbackState: JobState;
  callbackCount: number;
  callbackMeta: string;
  createdAtMs: number;
  finishedAtMs: number;
  /** Consecutive internal failures, for their backoff. */
  internalFailures: number;
}

/** HASH field names, shared with the Lua scripts. */
export const F = {
  spec: 'spec',
  aggr: 'aggr',
  state: 'state',
  count: 'count',
  meta: 'meta',
  code: 'code',
  imageSize: 'image_size',
  downloadUrl: 'download_url',
  sha256: 'sha256',
  size: 'size',
  cbState: 'cb_state',
  cbCount: 'cb_count',
  cbMeta: 'cb_meta',
  createdAt: 'created_at',
  finishedAt: 'finished_at',
  lease: 'lease',
  cbLease: 'cb_lease',
  internal: 'internal',
  hasCallback: 'has_cb',
  maxRetries: 'max_retries',
} as const;

/** Fields of a newly accepted job. */
export function initialFields(spec: JobSpec, downloadUrl: string, nowMs: number): string[] {
  const hasCb =
    spec.callback_url !== undefined || (spec.callback_type !== '' && spec.callback_dst !== '');
  // prettier-ignore
  return [
    F.spec, JSON.stringify(spec),
    F.aggr, spec.aggr_id,
    F.state, 'Pending',
    F.count, '0',
    F.meta, '',
    F.code, '0',
    F.imageSize, '',
    F.downloadUrl, downloadUrl,
    F.sha256, '',
    F.size, '0',
    F.cbState, '',
    F.cbCount, '0',
    F.cbMeta, '',
    F.createdAt, String(nowMs),
    F.finishedAt, '0',
    F.lease, '',
    F.cbLease, '',
    F.internal, '0',
    F.hasCallback, hasCb ? '1' : '0',
    F.maxRetries, spec.max_retries === null ? '-1' : String(spec.max_retries),
  ];
}

function int(value: string | undefined): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** Decodes HGETALL output (a flat array or an object); undefined when the record is gone. */
export function decodeRecord(raw: string[] | Record<string, string>): JobRecord | undefined {
  const map: Record<string, string> = {};
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) map[raw[i]] = raw[i + 1];
  } else {
    Object.assign(map, raw);
  }
  const specText = map[F.spec];
  if (specText === undefined) return undefined;
  return {
    spec: JSON.parse(specText) as JobSpec,
    downloadState: (map[F.state] ?? '') as JobState,
    downloadCount: int(map[F.count]),
    downloadMeta: map[F.meta] ?? '',
    responseCode: int(map[F.code]),
    imageSize: map[F.imageSize] ?? '',
    downloadUrl: map[F.downloadUrl] ?? '',
    sha256: map[F.sha256] ?? '',
    size: int(map[F.size]),
    callbackState: (map[F.cbState] ?? '') as JobState,
    callbackCount: int(map[F.cbCount]),
    callbackMeta: map[F.cbMeta] ?? '',
    createdAtMs: int(map[F.createdAt]),
    finishedAtMs: int(map[F.finishedAt]),
    internalFailures: int(map[F.internal]),
  };
}
