/**
 * Decoding and validation of the `POST /jobs` body (spec §2.2, §5). Keys match case-insensitively
 * with the exact spelling winning, unknown keys are ignored and missing ones are zero, as Go's
 * encoding/json does for the original server.
 */
import { isValidName } from '../build-info.js';
import type { JobRequest } from './builds.js';

const FIELDS = {
  project: 'Project',
  params: 'Params',
  group: 'Group',
  rebuild: 'Rebuild',
} as const;
type FieldName = (typeof FIELDS)[keyof typeof FIELDS];

export class BodyError extends Error {
  override readonly name = 'BodyError';
}

function goType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'object' : typeof value;
}

function wrongType(value: unknown, field: string, expected: string): BodyError {
  return new BodyError(
    `json: cannot unmarshal ${goType(value)} into Go struct field Job.${field} of type ${expected}`,
  );
}

function pick(body: Record<string, unknown>): Partial<Record<FieldName, unknown>> {
  const out: Partial<Record<FieldName, unknown>> = {};
  const exact = new Set<FieldName>();
  for (const [key, value] of Object.entries(body)) {
    const field = FIELDS[key.toLowerCase() as keyof typeof FIELDS] as FieldName | undefined;
    if (field === undefined) continue;
    if (key === field) {
      out[field] = value;
      exact.add(field);
    } else if (!exact.has(field)) out[field] = value;
  }
  return out;
}

/** Parses the raw body; throws BodyError with a Go-like reason on malformed input. */
export function decodeJobBody(raw: string): JobRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new BodyError((err as Error).message);
  }
  if (parsed === null) return { project: '', group: '', params: null, rebuild: false };
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BodyError(`json: cannot unmarshal ${goType(parsed)} into Go value of type Job`);
  }
  const fields = pick(parsed as Record<string, unknown>);
  const text = (name: 'Project' | 'Group'): string => {
    const value = fields[name];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') throw wrongType(value, name, 'string');
    return value;
  };
  const rebuild = fields.Rebuild ?? false;
  if (rebuild !== null && typeof rebuild !== 'boolean') throw wrongType(rebuild, 'Rebuild', 'bool');
  let params: Record<string, string> | null = null;
  const rawParams = fields.Params;
  if (rawParams !== undefined && rawParams !== null) {
    if (typeof rawParams !== 'object' || Array.isArray(rawParams)) {
      throw wrongType(rawParams, 'Params', 'map[string]string');
    }
    params = {};
    for (const [key, value] of Object.entries(rawParams as Record<string, unknown>)) {
      if (typeof value !== 'string') throw wrongType(value, 'Params', 'string');
      params[key] = value;
    }
  }
  return { project: text('Project'), group: text('Group'), params, rebuild: rebuild === true };
}

/** The 400 text for a request that names something outside the allowed names, else undefined. */
export function validateJob(request: JobRequest): string | undefined {
  if (request.project === '') return 'no project given';
  if (!isValidName(request.project)) return `Invalid project name '${request.project}'`;
  if (request.group !== '' && !isValidName(request.group))
    return `Invalid group '${request.group}'`;
  for (const key of Object.keys(request.params ?? {})) {
    if (!isValidName(key)) return `Invalid param key '${key}'`;
  }
  return undefined;
}
