/**
 * Record framing shared by spool and WAL segments (§3.9): a 6-byte header, then records of
 * `u32be length | u32be CRC-32(payload) | payload`.
 */
import { crc32 } from 'node:zlib';

export const SPOOL_HEADER = Buffer.from('SCRD1\n');
export const WAL_HEADER = Buffer.from('SCRW1\n');
export const RECORD_OVERHEAD = 8;
/** Larger lengths than this are treated as corruption, not as a record to wait for. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

export function encodeRecord(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(RECORD_OVERHEAD + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(crc32(payload), 4);
  payload.copy(out, RECORD_OVERHEAD);
  return out;
}

export type ScanStop = 'end' | 'torn' | 'corrupt';

export interface ScanResult {
  records: Buffer[];
  /** Offset just past the last good record. */
  end: number;
  /** Why scanning stopped: the clean end, a short record at the end, or a bad record. */
  stop: ScanStop;
}

/**
 * Reads whole records from `buf`, which starts at a record boundary (`base` is its offset in the
 * file). A short final record is `torn`; a length past the limit or a CRC mismatch is `corrupt`.
 */
export function scanRecords(buf: Buffer, base = 0, maxRecords = Infinity): ScanResult {
  const records: Buffer[] = [];
  let at = 0;
  while (at < buf.length && records.length < maxRecords) {
    if (buf.length - at < RECORD_OVERHEAD) return { records, end: base + at, stop: 'torn' };
    const length = buf.readUInt32BE(at);
    if (length > MAX_RECORD_BYTES) return { records, end: base + at, stop: 'corrupt' };
    if (buf.length - at - RECORD_OVERHEAD < length)
      return { records, end: base + at, stop: 'torn' };
    const payload = buf.subarray(at + RECORD_OVERHEAD, at + RECORD_OVERHEAD + length);
    if (crc32(payload) !== buf.readUInt32BE(at + 4))
      return { records, end: base + at, stop: 'corrupt' };
    records.push(payload);
    at += RECORD_OVERHEAD + length;
  }
  return { records, end: base + at, stop: 'end' };
}

export function segmentName(seq: number): string {
  return `${String(seq).padStart(20, '0')}.seg`;
}

export function parseSegmentName(name: string): number | undefined {
  const match = /^(\d{20})\.seg$/.exec(name);
  return match ? Number(match[1]) : undefined;
}
