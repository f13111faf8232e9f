/** MONITOR lines: `+<seconds>.<µs> [0 <issuer>] "<arg0>" "<arg1>"…`, with Redis escaping. */
import type { RequestArgs } from './resp-decoder.js';

const ESCAPES = new Map<number, string>([
  [0x5c, '\\\\'],
  [0x22, '\\"'],
  [0x0a, '\\n'],
  [0x0d, '\\r'],
  [0x09, '\\t'],
  [0x07, '\\a'],
  [0x08, '\\b'],
]);

/** Redis `sdscatrepr` escaping, without the surrounding quotes. */
export function escapeArg(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) {
    const escaped = ESCAPES.get(byte);
    if (escaped !== undefined) out += escaped;
    else if (byte >= 0x20 && byte <= 0x7e) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

export function monitorLine(
  nowMs: number,
  micros: number,
  issuer: string,
  args: RequestArgs,
): Buffer {
  const seconds = Math.floor(nowMs / 1000);
  const fraction = String(((nowMs % 1000) * 1000 + micros) % 1_000_000).padStart(6, '0');
  const quoted = args.map((arg) => `"${escapeArg(arg ?? Buffer.alloc(0))}"`).join(' ');
  return Buffer.from(
    `+${seconds}.${fraction} [0 ${escapeArg(Buffer.from(issuer, 'latin1'))}] ${quoted}\r\n`,
    'latin1',
  );
}
