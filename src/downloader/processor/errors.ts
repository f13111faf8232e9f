/**
 * Why an attempt failed, in the original's words (`Error while <phase>, <message>, retriable: …,
 * internal: …`), plus what the retry logic, the stats and the metrics need to know.
 */

/** Values of the `kind` label of downloader_processor_errors_total. */
export type ErrorKind =
  | 'network'
  | 'timeout'
  | 'tls'
  | 'status'
  | 'body'
  | 'size_limit'
  | 'mime'
  | 'image_size'
  | 'ssrf_blocked'
  | 'proxy'
  | 'storage'
  | 'internal';

export interface DownloadErrorOptions {
  retriable: boolean;
  internal?: boolean;
  kind: ErrorKind;
  /** Suffix of the `download.response.` stat, if the condition has one. */
  stat?: string;
  /** The HTTP status of the response, 0 if none. */
  responseCode?: number;
  /** Earliest next attempt asked by a `Retry-After` header, in ms from now. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class DownloadError extends Error {
  override readonly name = 'DownloadError';
  readonly phase: string;
  readonly detail: string;
  readonly retriable: boolean;
  readonly internal: boolean;
  readonly kind: ErrorKind;
  readonly stat: string | undefined;
  readonly responseCode: number;
  readonly retryAfterMs: number | undefined;

  constructor(phase: string, detail: string, options: DownloadErrorOptions) {
    const internal = options.internal ?? false;
    super(
      `Error while ${phase}, ${detail}, retriable: ${String(options.retriable)}, internal: ${String(internal)}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.phase = phase;
    this.detail = detail;
    this.retriable = options.retriable;
    this.internal = internal;
    this.kind = options.kind;
    this.stat = options.stat;
    this.responseCode = options.responseCode ?? 0;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A storage failure: internal, retried with backoff, never ending the job. */
export function storageError(phase: string, err: unknown): DownloadError {
  const detail = err instanceof Error ? err.message : String(err);
  return new DownloadError(phase, detail, {
    retriable: true,
    internal: true,
    kind: 'storage',
    cause: err,
  });
}

/** `Retry-After` as seconds or an HTTP date, in ms from `nowMs`, capped; undefined if absent. */
export function parseRetryAfter(
  value: string | undefined,
  capS: number,
  nowMs = Date.now(),
): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) ms = Number(trimmed) * 1000;
  else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  return Math.max(0, Math.min(ms, capS * 1000));
}

/** Delay before the next attempt of a retriable, non-internal failure. */
export function retryDelayMs(attempt: number, unitMs: number, retryAfterMs?: number): number {
  return Math.max(attempt * unitMs, retryAfterMs ?? 0);
}

/** Delay after the k-th consecutive internal failure: unit × 2^(k−1), capped at 60 units. */
export function internalDelayMs(consecutive: number, unitMs: number): number {
  const k = Math.max(1, consecutive);
  return Math.min(unitMs * 2 ** Math.min(k - 1, 20), unitMs * 60);
}
