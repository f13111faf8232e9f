/** MIME detection on the first bytes of a body, and the original's pattern rules. */
import { fileTypeFromBuffer } from 'file-type';
import { globMatch } from '../glob.js';

/** Bytes file-type needs to recognise every type it knows. */
export const SAMPLE_BYTES = 4100;

function looksLikeText(sample: Buffer): boolean {
  if (sample.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample);
    return true;
  } catch {
    // A cut in the middle of a multi-byte character at the end of the sample is still text.
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(
        sample.subarray(0, Math.max(0, sample.length - 3)),
      );
      return sample.length > 3;
    } catch {
      return false;
    }
  }
}

/** The MIME type of a body from its first bytes. */
export async function detectMime(sample: Buffer): Promise<string> {
  if (sample.length === 0) return 'application/x-empty';
  const found = await fileTypeFromBuffer(sample);
  if (found) return found.mime;
  return looksLikeText(sample) ? 'text/plain' : 'application/octet-stream';
}

/**
 * Checks `mime` against a comma list of globs (all must hold); the failure's message or undefined.
 */
export function mimeMismatch(patterns: string, mime: string): string | undefined {
  for (const item of patterns.split(',')) {
    const trimmed = item.trim();
    if (trimmed.startsWith('!')) {
      const glob = trimmed.slice(1);
      if (globMatch(glob, mime)) return `Expected mime-type not to be (${glob}) found - (${mime})`;
    } else if (!globMatch(trimmed, mime)) {
      return `Expected mime-type to be (${trimmed}), found (${mime})`;
    }
  }
  return undefined;
}
