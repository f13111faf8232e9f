/**
 * One download attempt: a streaming GET with got into a temp file, counting, hashing and sniffing
 * the bytes as they pass (never the whole body in memory), then the type check, fsync and the
 * image size. Every failure comes out as a DownloadError classified as in the spec's table.
 */
import { createHash } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { isIP } from 'node:net';
import got, { type Request, type RequestFunction, type Response } from 'got';
import { proxiedRequest } from './proxy.js';
import { DownloadError, parseRetryAfter } from './errors.js';
import type { GcHint } from './gc-hint.js';
import { imageSize, ImageSizeError } from './image-size.js';
import { detectMime, mimeMismatch, SAMPLE_BYTES } from './mime.js';
import { SsrfBlockedError, type SsrfGuard } from './ssrf.js';

export interface AttemptTimeouts {
  connect_ms: number;
  tls_ms: number;
  response_ms: number;
  idle_ms: number;
}

export interface AttemptRequest {
  url: string;
  /** Config headers already merged with (and overridden by) the job's. */
  headers: Record<string, string>;
  proxy: string;
  timeouts: AttemptTimeouts;
  /** Bound on the whole attempt. */
  attemptMs: number;
  maxBytes: number;
  tmpPath: string;
  mimePattern: string;
  extractImageSize: boolean;
  guard: SsrfGuard | undefined;
  retryAfterMaxS: number;
  /** Aborted on shutdown or when the lease is lost. */
  signal: AbortSignal;
  /**
   * Whether the job's lease is still held; asked once the body is complete, while the temp file
   * is synced, and answered in `leaseHeld`. A failure is an internal error.
   */
  fence?: () => Promise<boolean>;
  /** Told the size of every body chunk, to free socket buffers early (gc-hint.ts). */
  gcHint?: GcHint;
}

export interface AttemptResult {
  responseCode: number;
  sha256: string;
  size: number;
  imageSize: string;
  mime: string;
  /** The `fence` answer (true without one); when false the temp file is left to the caller. */
  leaseHeld: boolean;
}

/** Thrown when `signal` aborted the attempt: it is put back, not failed. */
export class AttemptAbortedError extends Error {
  override readonly name = 'AttemptAbortedError';
}

/** Body bytes gathered before one write to the temp file (memory per download stays bounded). */
const WRITE_BATCH_BYTES = 1024 * 1024;

/** Bytes written between two early data syncs of a large body (see SyncAhead). */
const SYNC_AHEAD_BYTES = 64 * 1024 * 1024;

/** Bytes kept for JPEG headers, whose frame header may follow large EXIF blocks. */
const IMAGE_HEADER_BYTES = 256 * 1024;

const TLS_CODES =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_OSSL_|HOSTNAME_MISMATCH)/;

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  let current = err;
  for (let i = 0; i < 5 && current !== undefined && current !== null; i++) {
    out.push(current);
    current = (current as { cause?: unknown }).cause;
  }
  return out;
}

function codeOf(err: unknown): string {
  for (const e of causes(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'ERR_GOT_REQUEST_ERROR') return code;
  }
  return '';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isTimeout(err: unknown): boolean {
  return causes(err).some(
    (e) => (e as { name?: unknown }).name === 'TimeoutError' || codeOf(e) === 'ETIMEDOUT',
  );
}

/** Classifies a transport error before or during the body. */
function transportError(err: unknown, inBody: boolean, attemptTimedOut: boolean): DownloadError {
  const blocked = causes(err).find((e) => e instanceof SsrfBlockedError);
  if (blocked) {
    return new DownloadError('performing request', blocked.message, {
      retriable: false,
      kind: 'ssrf_blocked',
    });
  }
  const code = codeOf(err);
  if (!inBody && TLS_CODES.test(code) && !isTimeout(err)) {
    return new DownloadError('performing request', `TLS Error occured: ${messageOf(err)}`, {
      retriable: false,
      kind: 'tls',
      stat: 'tls',
    });
  }
  const timedOut = attemptTimedOut || isTimeout(err);
  const detail = attemptTimedOut ? 'attempt deadline exceeded' : messageOf(err);
  if (inBody) {
    const eof =
      !timedOut &&
      /ECONNRESET|ERR_STREAM_PREMATURE_CLOSE|CONTENT_LENGTH_MISMATCH|Content-Length mismatch|aborted|socket hang up/i.test(
        `${code} ${detail}`,
      );
    return new DownloadError('downloading file', eof ? 'unexpected EOF' : detail, {
      retriable: true,
      kind: timedOut ? 'timeout' : 'body',
      stat: 'body',
    });
  }
  return new DownloadError('performing request', detail, {
    retriable: true,
    kind: timedOut ? 'timeout' : 'network',
  });
}

function statusError(response: Response, maxS: number): DownloadError {
  const code = response.statusCode;
  const reason = response.statusMessage || STATUS_CODES[code] || '';
  const retriable = code >= 500 || code === 429;
  const retryAfter =
    code === 429 || code === 503
      ? parseRetryAfter(response.headers['retry-after'], maxS)
      : undefined;
  return new DownloadError(
    'processing response',
    `Received status code ${code} ${reason}`.trimEnd(),
    {
      retriable,
      kind: 'status',
      stat: String(code),
      responseCode: code,
      retryAfterMs: retryAfter,
    },
  );
}

function tooLarge(max: number, code: number): DownloadError {
  return new DownloadError(
    'downloading file',
    `response body exceeds the maximum size of ${max} bytes`,
    {
      retriable: false,
      kind: 'size_limit',
      stat: 'body',
      responseCode: code,
    },
  );
}

function checkScheme(url: string): void {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url);
  const scheme = match?.[1]?.toLowerCase() ?? '';
  if (scheme !== 'http' && scheme !== 'https') {
    throw new DownloadError(
      'performing request',
      `Get "${url}": unsupported protocol scheme "${scheme}"`,
      {
        retriable: true,
        kind: 'network',
      },
    );
  }
}

function checkProxy(proxy: string): void {
  if (proxy === '') return;
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(proxy)?.[1]?.toLowerCase() ?? '';
  if (scheme !== 'http' && scheme !== 'https') {
    throw new DownloadError('creating request', `unsupported proxy scheme "${scheme}"`, {
      retriable: false,
      kind: 'proxy',
    });
  }
}

function guardLiteral(guard: SsrfGuard | undefined, url: URL): void {
  if (!guard) return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0 && guard.refuses(host)) throw new SsrfBlockedError(host);
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
}

function openStream(req: AttemptRequest, signal: AbortSignal): Request {
  const decompress = !hasHeader(req.headers, 'accept-encoding');
  const headers = decompress ? { ...req.headers, 'accept-encoding': 'gzip' } : req.headers;
  return got.stream(req.url, {
    headers,
    decompress,
    followRedirect: true,
    maxRedirects: 10,
    throwHttpErrors: false,
    retry: { limit: 0 },
    signal,
    timeout: {
      connect: req.timeouts.connect_ms,
      secureConnect: req.timeouts.tls_ms,
      response: req.timeouts.response_ms,
      socket: req.timeouts.idle_ms,
    },
    ...(req.guard ? { dnsLookup: req.guard.lookup() } : {}),
    ...(req.proxy !== ''
      ? { request: proxiedRequest(req.proxy, req.guard?.lookup()) as unknown as RequestFunction }
      : {}),
    hooks: {
      beforeRedirect: [
        (options) => {
          const next = options.url;
          if (next instanceof URL) guardLiteral(req.guard, next);
        },
      ],
    },
  });
}

function awaitResponse(stream: Request): Promise<Response> {
  return new Promise((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
}

interface BodyState {
  size: number;
  sample: Buffer[];
  sampleBytes: number;
  mime: string | undefined;
}

/**
 * Starts an fdatasync of the temp file after every SYNC_AHEAD_BYTES written, one at a time, so a
 * large body reaches the disk while it downloads and the final fsync has only the tail to flush.
 * Only that final fsync makes the file durable, but an early failure still fails the attempt:
 * after a failed sync the kernel may have dropped the pages it could not write.
 */
class SyncAhead {
  private unsynced = 0;
  private running: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(private readonly file: FileHandle) {}

  wrote(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < SYNC_AHEAD_BYTES || this.running) return;
    this.unsynced = 0;
    this.running = this.file
      .datasync()
      .catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => (this.running = undefined));
  }

  /** Waits for the sync in flight; throws the first failure. */
  async settle(): Promise<void> {
    await this.running;
    if (this.failure !== undefined) throw this.failure;
  }
}

// The sha256 of the body is computed on the event loop, about a second of CPU per GiB. Hashing
// in a worker thread instead was tried and measured (each 1 MiB batch copied and transferred, at
// most 4 in flight): 1 GiB reached 0.44-0.63 of curl + sync against 0.82-0.86 inline, and the
// processor's RSS grew 110 MiB instead of 31, because the transferred buffers are freed only when
// the nearly idle worker collects. On this 2-core machine the thread competes with the socket.
async function writeBody(
  stream: Request,
  file: FileHandle,
  req: AttemptRequest,
  code: number,
  hash: ReturnType<typeof createHash>,
  ahead: SyncAhead,
): Promise<BodyState> {
  const state: BodyState = { size: 0, sample: [], sampleBytes: 0, mime: undefined };
  const keep = req.extractImageSize ? IMAGE_HEADER_BYTES : SAMPLE_BYTES;
  const checking = req.mimePattern !== '' || req.extractImageSize;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    state.size += chunk.length;
    if (state.size > req.maxBytes) throw tooLarge(req.maxBytes, code);
    req.gcHint?.received(chunk.length);
    hash.update(chunk);
    if (state.sampleBytes < keep) {
      state.sample.push(chunk.subarray(0, keep - state.sampleBytes));
      state.sampleBytes += Math.min(chunk.length, keep - state.sampleBytes);
    }
    if (checking && state.mime === undefined && state.sampleBytes >= SAMPLE_BYTES) {
      await checkType(state, req, code);
    }
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= WRITE_BATCH_BYTES) {
      await flush(file, pending);
      ahead.wrote(pendingBytes);
      pending = [];
      pendingBytes = 0;
    }
  }
  if (checking && state.mime === undefined) await checkType(state, req, code);
  await flush(file, pending);
  return state;
}

/** Writes chunks gathered from the socket in one call: fewer, larger writes to the temp file. */
async function flush(file: FileHandle, chunks: Buffer[]): Promise<void> {
  if (chunks.length === 0) return;
  try {
    await file.writev(chunks);
  } catch (err) {
    throw new DownloadError('writing tmp file', messageOf(err), {
      retriable: true,
      internal: true,
      kind: 'storage',
    });
  }
}

async function checkType(state: BodyState, req: AttemptRequest, code: number): Promise<void> {
  const sample = Buffer.concat(state.sample).subarray(0, SAMPLE_BYTES);
  if (req.mimePattern === '') {
    state.mime = await detectMime(sample).catch(() => '');
    return;
  }
  state.mime = await detectMime(sample);
  const mismatch = mimeMismatch(req.mimePattern, state.mime);
  if (mismatch !== undefined) {
    throw new DownloadError('validating mime type', mismatch, {
      retriable: false,
      kind: 'mime',
      stat: 'mime',
      responseCode: code,
    });
  }
}

function sizeOf(state: BodyState, code: number): string {
  try {
    return imageSize(state.mime ?? '', Buffer.concat(state.sample));
  } catch (err) {
    if (!(err instanceof ImageSizeError)) throw err;
    throw new DownloadError('extracting image-size', err.message, {
      retriable: false,
      kind: 'image_size',
      stat: 'image-size',
      responseCode: code,
    });
  }
}

async function askFence(fence: Promise<boolean> | undefined): Promise<boolean> {
  if (!fence) return true;
  try {
    return await fence;
  } catch (err) {
    throw new DownloadError('processing job', messageOf(err), {
      retriable: true,
      internal: true,
      kind: 'internal',
    });
  }
}

/** Runs one attempt; the temp file holds the body on success and is removed on failure. */
export async function runAttempt(req: AttemptRequest): Promise<AttemptResult> {
  checkScheme(req.url);
  checkProxy(req.proxy);
  const attemptTimer = AbortSignal.timeout(req.attemptMs);
  const signal = AbortSignal.any([req.signal, attemptTimer]);
  let response: Response | undefined;
  let file: FileHandle | undefined;
  const stream = openStream(req, signal);
  stream.on('error', () => undefined); // errors reach us through the awaits below
  try {
    guardLiteral(req.guard, new URL(req.url));
    if (req.proxy !== '') guardLiteral(req.guard, new URL(req.proxy));
    response = await awaitResponse(stream);
    const code = response.statusCode;
    if (code >= 400) throw statusError(response, req.retryAfterMaxS);
    const announced = Number(response.headers['content-length']);
    if (Number.isFinite(announced) && announced > req.maxBytes) throw tooLarge(req.maxBytes, code);
    try {
      file = await open(req.tmpPath, 'w', 0o644);
    } catch (err) {
      throw new DownloadError('creating tmp file', messageOf(err), {
        retriable: true,
        internal: true,
        kind: 'storage',
      });
    }
    const hash = createHash('sha256');
    const ahead = new SyncAhead(file);
    const state = await writeBody(stream, file, req, code, hash, ahead);
    const decoded =
      response.headers['content-encoding'] !== undefined &&
      !hasHeader(req.headers, 'accept-encoding');
    if (!decoded && Number.isFinite(announced) && state.size < announced) {
      throw new DownloadError('downloading file', 'unexpected EOF', {
        retriable: true,
        kind: 'body',
        stat: 'body',
      });
    }
    const fence = req.fence?.();
    // Awaited below; a sync failure must not leave its rejection unhandled meanwhile.
    fence?.catch(() => undefined);
    try {
      await ahead.settle();
      await file.sync();
      await file.close();
      file = undefined;
    } catch (err) {
      throw new DownloadError('syncing to disk', messageOf(err), {
        retriable: true,
        internal: true,
        kind: 'storage',
      });
    }
    const leaseHeld = await askFence(fence);
    const size = req.extractImageSize ? sizeOf(state, code) : '';
    return {
      responseCode: code,
      sha256: hash.digest('hex'),
      size: state.size,
      imageSize: size,
      mime: state.mime ?? '',
      leaseHeld,
    };
  } catch (err) {
    stream.destroy();
    await file?.close().catch(() => undefined);
    await unlink(req.tmpPath).catch(() => undefined);
    if (req.signal.aborted) throw new AttemptAbortedError('attempt aborted', { cause: err });
    if (err instanceof DownloadError) throw err;
    if (err instanceof SsrfBlockedError) throw transportError(err, false, false);
    throw transportError(err, response !== undefined, attemptTimer.aborted);
  }
}
