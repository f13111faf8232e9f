/**
 * Job IDs (spec §2.6): SHA-256 over a versioned, length-prefixed encoding of the project, the
 * group, the params whose keys do not start with `_`, and each regular file of the project in path
 * order. Clients treat IDs as opaque; only the server computes them.
 */
import { createHash, type Hash } from 'node:crypto';

export const JOB_ID_VERSION = 'mistry-job-v1';
export const JOB_ID_PATTERN = /^[0-9a-f]{64}$/;

/** One regular file of a project as it enters the ID. */
export interface FileFingerprint {
  /** Path relative to the project dir, `/`-separated. */
  path: string;
  /** `mode & 0o7777`. */
  mode: number;
  mtimeS: number;
  size: number;
  /** Hex SHA-256 of the content. */
  sha256: string;
}

export interface JobIdInput {
  project: string;
  group: string;
  params: Record<string, string> | null;
  files: readonly FileFingerprint[];
}

function field(hash: Hash, value: string | number): void {
  const bytes = Buffer.from(String(value), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(bytes.length));
  hash.update(length);
  hash.update(bytes);
}

function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Params that enter the ID: every key not starting with `_`, sorted by UTF-8 bytes. */
export function identityParams(params: Record<string, string> | null): [string, string][] {
  return Object.entries(params ?? {})
    .filter(([key]) => !key.startsWith('_'))
    .sort(([a], [b]) => byUtf8(a, b));
}

export function computeJobId(input: JobIdInput): string {
  const hash = createHash('sha256');
  field(hash, JOB_ID_VERSION);
  field(hash, input.project);
  field(hash, input.group);
  const params = identityParams(input.params);
  field(hash, params.length);
  for (const [key, value] of params) {
    field(hash, key);
    field(hash, value);
  }
  const files = [...input.files].sort((a, b) => byUtf8(a.path, b.path));
  field(hash, files.length);
  for (const file of files) {
    field(hash, file.path);
    field(hash, file.mode & 0o7777);
    field(hash, file.mtimeS);
    field(hash, file.size);
    field(hash, file.sha256);
  }
  return hash.digest('hex');
}
