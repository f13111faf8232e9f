/**
 * Parsing of command arguments whose error texts are part of the contract: ack positions (Go's
 * strconv.ParseInt messages), BLPOP timeouts and DUMP timeouts.
 */

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
const INT32_MAX = 2n ** 31n - 1n;
const INT32_MIN = -(2n ** 31n);

export type ParsedInt = { ok: true; value: bigint } | { ok: false; error: string };

/** Go's `%q` for printable ASCII; other bytes are escaped the way Go does. */
export function goQuote(text: Buffer): string {
  let out = '"';
  for (const byte of text) {
    if (byte === 0x22) out += '\\"';
    else if (byte === 0x5c) out += '\\\\';
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else if (byte === 0x0a) out += '\\n';
    else if (byte === 0x0d) out += '\\r';
    else if (byte === 0x09) out += '\\t';
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

function syntax(s: Buffer): ParsedInt {
  return { ok: false, error: `strconv.ParseInt: parsing ${goQuote(s)}: invalid syntax` };
}

function range(s: Buffer): ParsedInt {
  return { ok: false, error: `strconv.ParseInt: parsing ${goQuote(s)}: value out of range` };
}

/** Unsigned decimal digits without a leading zero, short enough to be exact as a number. */
function plainDecimal(raw: Buffer): number | undefined {
  const length = raw.length;
  if (length === 0 || length > 15 || (length > 1 && raw[0] === 0x30)) return undefined;
  let value = 0;
  for (let i = 0; i < length; i++) {
    const digit = raw[i] - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return value;
}

/** `strconv.ParseInt(s, base, bits)` for base 10 or 0 (auto: `0x` hex, leading-0 octal). */
export function parseGoInt(raw: Buffer, base: 0 | 10, bits: 32 | 64): ParsedInt {
  // Fast path for what acks carry: the same value either base gives, without regexes.
  const plain = plainDecimal(raw);
  if (plain !== undefined) {
    if (bits === 32 && plain > 2_147_483_647) return range(raw);
    return { ok: true, value: BigInt(plain) };
  }
  let text = raw.toString('latin1');
  let negative = false;
  if (text.startsWith('+') || text.startsWith('-')) {
    negative = text.startsWith('-');
    text = text.slice(1);
  }
  let radix = 10;
  if (base === 0) {
    if (/^0[xX]/.test(text)) {
      radix = 16;
      text = text.slice(2);
    } else if (/^0[bB]/.test(text)) {
      radix = 2;
      text = text.slice(2);
    } else if (/^0[oO]/.test(text)) {
      radix = 8;
      text = text.slice(2);
    } else if (text.length > 1 && text.startsWith('0')) {
      radix = 8;
      text = text.slice(1);
    }
    // Go allows `_` between digits when the base is inferred.
    if (/^_|__|_$/.test(text)) return syntax(raw);
    text = text.replace(/_/g, '');
  }
  const digits = { 2: /^[01]+$/, 8: /^[0-7]+$/, 10: /^[0-9]+$/, 16: /^[0-9a-fA-F]+$/ }[
    radix
  ] as RegExp;
  if (!digits.test(text)) return syntax(raw);
  const prefix = { 2: '0b', 8: '0o', 10: '', 16: '0x' }[radix] as string;
  let value = BigInt(`${prefix}${text}`);
  if (negative) value = -value;
  const [min, max] = bits === 64 ? [INT64_MIN, INT64_MAX] : [INT32_MIN, INT32_MAX];
  if (value < min || value > max) return range(raw);
  return { ok: true, value };
}

/** offset + 1 in int64 arithmetic: the maximum wraps to the minimum, as in Go. */
export function nextPosition(offset: bigint): bigint {
  return BigInt.asIntN(64, offset + 1n);
}

/** Most seconds a BLPOP may wait; larger values are clamped (fits a 32-bit ms timer). */
export const MAX_BLPOP_SECONDS = 2_147_483;

/** A BLPOP timeout in ms: float seconds; unparsable, 0, negative or infinite gives the default. */
export function blpopTimeoutMs(raw: Buffer | null | undefined, defaultSeconds: number): number {
  const text = raw?.toString('latin1').trim() ?? '';
  const seconds = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
  const chosen = Number.isFinite(seconds) && seconds > 0 ? seconds : defaultSeconds;
  return Math.round(Math.min(chosen, MAX_BLPOP_SECONDS) * 1000);
}

/** A DUMP timeout: `[+-]?[0-9]+`, else undefined (`PROD NaN`). */
export function dumpTimeoutMs(raw: Buffer | null | undefined): number | undefined {
  const text = raw?.toString('latin1') ?? '';
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  return Math.min(Number(text), 2_147_483_647);
}

/** Splits on `:` into at most `limit` parts; the last part keeps the remaining colons. */
export function splitN(bytes: Buffer, limit: number): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  while (parts.length < limit - 1) {
    const colon = bytes.indexOf(0x3a, from);
    if (colon === -1) break;
    parts.push(bytes.subarray(from, colon));
    from = colon + 1;
  }
  parts.push(bytes.subarray(from));
  return parts;
}
