/**
 * The job a client posts, checked rule by rule in the original's order so that clients see the
 * same first error, and the `Job{…}` rendering that the API's 500 and retry messages embed.
 */
import { randomBytes } from 'node:crypto';
import { goQuote, requestUriError } from './go-url.js';
import { isValidGlob } from './glob.js';

/** What a client asked for, as stored with the job. */
export interface JobSpec {
  id: string;
  aggr_id: string;
  url: string;
  /** Undefined when the client sent none (then type and dst name the backend). */
  callback_url?: string;
  callback_type: string;
  callback_dst: string;
  extra: string;
  mime_type: string;
  /** Null: the default of 2 retries. */
  max_retries: number | null;
  extract_image_size: boolean;
  /** Seconds; null: the configured attempt limit. */
  download_timeout: number | null;
  request_headers: Record<string, string>;
  s3_bucket: string;
  s3_region: string;
}

export interface AggregationSpec {
  id: string;
  limit: number;
  proxy: string;
}

/** 10 random bytes, base64url without padding: 14 characters. */
export function newJobId(): string {
  return randomBytes(10).toString('base64url');
}

/** Whether the job has somewhere to report to. */
export function hasCallback(job: JobSpec): boolean {
  return job.callback_url !== undefined || (job.callback_type !== '' && job.callback_dst !== '');
}

/** The original's `Job{…}` line, headers sorted by key. */
export function formatJob(job: JobSpec, downloadUrl: string, imageSize = ''): string {
  const headers = Object.keys(job.request_headers)
    .sort()
    .map((key) => `${key}:${job.request_headers[key] ?? ''}`)
    .join(' ');
  return (
    `Job{ID:${job.id}, Aggr:${job.aggr_id}, URL:${job.url}, ` +
    `ExtractImageSize:${String(job.extract_image_size)}, ImageSize: ${imageSize}, ` +
    `callback_url:${job.callback_url ?? ''}, callback_type:${job.callback_type}, ` +
    `callback_dst:${job.callback_dst}, Timeout:${job.download_timeout ?? 0}, ` +
    `RequestHeaders:map[${headers}], DownloadURL:${downloadUrl}}`
  );
}

/** A rule the body broke; the message is the `<msg>` of the 400 answer. */
export class JobValidationError extends Error {
  override readonly name = 'JobValidationError';
}

function invalid(message: string): never {
  throw new JobValidationError(message);
}

function goTypeName(value: unknown): string {
  if (value === null) return '<nil>';
  if (Array.isArray(value)) return '[]interface {}';
  if (typeof value === 'object') return 'map[string]interface {}';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return 'float64';
  return 'string';
}

/** Go's `%s` of a JSON value that is not a string. */
function goBadVerb(value: unknown): string {
  if (value === null) return '%!s(<nil>)';
  if (typeof value === 'number') return `%!s(float64=${goFloat(value)})`;
  if (typeof value === 'boolean') return `%!s(bool=${String(value)})`;
  return JSON.stringify(value);
}

function goFloat(n: number): string {
  // Go pads a one-digit exponent (`1e-07`); other large or small values are rare in headers.
  return String(n).replace(/e([+-])(\d)$/, 'e$10$2');
}

function goJsonError(body: string, err: unknown): string {
  const trimmed = body.trim();
  if (trimmed === '') return 'unexpected end of JSON input';
  const first = trimmed[0] ?? '';
  if (!/[[{"\-0-9tfn]/.test(first)) {
    return `invalid character ${goQuote(first).replace(/^"|"$/g, "'")} looking for beginning of value`;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/end of (JSON )?input|Unterminated/i.test(message)) return 'unexpected end of JSON input';
  return `invalid character in JSON: ${message}`;
}

/** Parses the body into a JSON object, with Go's wording for what is not one. */
export function parseBody(body: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    invalid(goJsonError(body, err));
  }
  if (value === null) return {};
  if (Array.isArray(value)) invalid(unmarshalText('array'));
  if (typeof value !== 'object') invalid(unmarshalText(typeof value));
  return value as Record<string, unknown>;
}

function unmarshalText(kind: string): string {
  const goKind = kind === 'boolean' ? 'bool' : kind;
  return `json: cannot unmarshal ${goKind} into Go value of type map[string]interface {}`;
}

function stringOrEmpty(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function checkUrl(raw: unknown): string {
  if (typeof raw !== 'string') invalid('URL must be a string');
  const error = requestUriError(raw);
  if (error !== undefined) invalid(`Could not parse URL: ${error}`);
  return raw;
}

function checkAggrId(raw: unknown): string {
  if (typeof raw !== 'string') invalid('aggr_id must be a string');
  if (raw === '') invalid('aggr_id cannot be empty');
  return raw;
}

function checkCallback(
  body: Record<string, unknown>,
  bucket: string,
): Pick<JobSpec, 'callback_url' | 'callback_type' | 'callback_dst'> {
  const url = body.callback_url;
  if (typeof url === 'string') {
    const error = requestUriError(url);
    if (error !== undefined) invalid(`Could not parse callback URL: ${error}`);
    return { callback_url: url, callback_type: '', callback_dst: '' };
  }
  if (bucket !== '') {
    return {
      callback_type: stringOrEmpty(body.callback_type),
      callback_dst: stringOrEmpty(body.callback_dst),
    };
  }
  const type = body.callback_type;
  const dst = body.callback_dst;
  if (typeof type !== 'string') invalid('callback_type must be a string');
  if (typeof dst !== 'string') invalid('callback_dst must be a string');
  if (type === '' || dst === '') {
    invalid(
      `You need to provide both callback_type (${goQuote(type)}) and callback_dst (${goQuote(dst)})`,
    );
  }
  if (dst.startsWith('http')) {
    const error = requestUriError(dst);
    if (error !== undefined) invalid(`Could not parse URL: ${error}`);
  }
  return { callback_type: type, callback_dst: dst };
}

function checkMimeType(raw: unknown): string {
  if (raw === undefined) return '';
  if (typeof raw !== 'string') invalid('MimeType pattern must be a string');
  for (const item of raw.split(',')) {
    const trimmed = item.trim();
    const glob = trimmed.startsWith('!') ? trimmed.slice(1) : trimmed;
    if (!isValidGlob(glob)) invalid(`Invalid MimeType Pattern, ${goQuote(trimmed)}`);
  }
  return raw;
}

function checkMaxRetries(raw: unknown): number | null {
  if (raw === undefined) return null;
  if (typeof raw !== 'number') invalid(`Max retries must be a number, was: ${goTypeName(raw)}`);
  const value = Math.trunc(raw);
  if (value < 0) invalid('Max retries must not be negative');
  return value;
}

function checkTimeout(raw: unknown): number | null {
  if (raw === undefined) return null;
  if (typeof raw !== 'number') invalid('Download timeout must be a number');
  const value = Math.trunc(raw);
  if (value <= 0) invalid('Download timeout must be greater than 0');
  return value;
}

function checkHeaders(raw: unknown): Record<string, string> {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    invalid('request_headers must be a dictionary');
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') {
      invalid(
        `Values of request headers keys must be either strings or ints.Given value is ${goBadVerb(value)}`,
      );
    }
    out[key] = value;
  }
  return out;
}

/** Job rules 1–11 of the contract, in order; throws JobValidationError with the first `<msg>`. */
export function validateJob(body: Record<string, unknown>): JobSpec {
  const url = checkUrl(body.url);
  const aggr = checkAggrId(body.aggr_id);
  const bucket = stringOrEmpty(body.s3_bucket);
  const region = stringOrEmpty(body.s3_region);
  if (region !== '' && bucket === '') invalid('s3_region provided without an s3_bucket');
  if (bucket !== '' && region === '') invalid('s3_bucket provided without an s3_region');
  const callback = checkCallback(body, bucket);
  const extra = stringOrEmpty(body.extra);
  const mime = checkMimeType(body.mime_type);
  const maxRetries = checkMaxRetries(body.max_retries);
  const extract = body.extract_image_size;
  if (extract !== undefined && typeof extract !== 'boolean') {
    invalid('ExtractImageSize must be a boolean');
  }
  const timeout = checkTimeout(body.download_timeout);
  const headers = checkHeaders(body.request_headers);
  return {
    id: '',
    aggr_id: aggr,
    url,
    ...callback,
    extra,
    mime_type: mime,
    max_retries: maxRetries,
    extract_image_size: extract === true,
    download_timeout: timeout,
    request_headers: headers,
    s3_bucket: bucket,
    s3_region: region,
  };
}

/** The aggregation rules; throws JobValidationError with the `<msg>`. */
export function validateAggregation(body: Record<string, unknown>): AggregationSpec {
  const id = body.aggr_id;
  if (typeof id !== 'string') invalid('Aggregation ID must be a string');
  if (id === '') invalid('Aggregation ID cannot be empty');
  const rawLimit = body.aggr_limit;
  if (typeof rawLimit !== 'number') invalid('Aggregation limit must be a number');
  const limit = Math.trunc(rawLimit);
  if (limit <= 0) invalid('Aggregation limit must be greater than 0');
  let proxy = '';
  if (Object.hasOwn(body, 'aggr_proxy')) {
    const raw = body.aggr_proxy;
    if (typeof raw !== 'string') invalid('Aggregation proxy must be a string');
    const error = raw === '' ? undefined : requestUriError(raw);
    if (error !== undefined) invalid(`Aggregation proxy must be a valid URI: ${error}`);
    proxy = raw;
  }
  if (Object.hasOwn(body, 'expiresAt') && typeof body.expiresAt !== 'string') {
    invalid('Aggregation expiresAt must be a string');
  }
  return { id, limit, proxy };
}
