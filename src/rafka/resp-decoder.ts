/**
 * Incremental decoder for the RESP requests rafka accepts: multibulk (`*<n>` then `$<len>` items)
 * and inline lines. It is a byte state machine, so input may be split at any offset and a large
 * bulk is gathered in slices without re-scanning. After a protocol error the decoder stops: the
 * caller answers the commands decoded before it, writes the error and closes the connection.
 */

/** The six protocol error texts of the original server, written as `-<text>\r\n`. */
export const ProtocolErrorText = {
  expectNumber: 'Expect Number',
  expectNewline: 'Expect Newline',
  expectTypeChar: 'Expect TypeChar',
  tooManyArg: 'TooManyArg',
  invalidBulkSize: 'Invalid bulk size',
  lineTooLong: 'LineTooLong',
} as const;

export type ProtocolErrorKind = keyof typeof ProtocolErrorText;

/** One decoded request: its arguments as raw bytes; `null` is a `$-1` null bulk. */
export type RequestArgs = (Buffer | null)[];

export interface DecodeResult {
  requests: RequestArgs[];
  /** Set when the input broke the protocol; nothing after it is decoded. */
  error?: ProtocolErrorKind;
}

export const MAX_ARGS = 20;
export const MAX_BULK_BYTES = 32_768_000;
export const MAX_INLINE_BYTES = 1024;
/** Digits beyond this make any length an overflow; no valid length needs more. */
const NUMBER_CAP = 1e12;

const CR = 0x0d;
const LF = 0x0a;
const MINUS = 0x2d;

type State =
  'start' | 'arrayLength' | 'itemType' | 'bulkLength' | 'bulkData' | 'bulkCr' | 'bulkLf' | 'inline';

interface NumberReader {
  negative: boolean;
  digits: number;
  value: number;
  /** True once the `\r` was seen; the next byte must be `\n`. */
  sawCr: boolean;
  /** True once the `\n` was read: the number is complete. */
  done: boolean;
}

/** Starts a number in place (no allocation per length on the hot path). */
function resetNumber(num: NumberReader): void {
  num.negative = false;
  num.digits = 0;
  num.value = 0;
  num.sawCr = false;
  num.done = false;
}

export class RespDecoder {
  private state: State = 'start';
  private readonly num: NumberReader = {
    negative: false,
    digits: 0,
    value: 0,
    sawCr: false,
    done: false,
  };
  private expectedArgs = 0;
  private args: RequestArgs = [];
  private bulkRemaining = 0;
  private bulkParts: Buffer[] = [];
  private inlineParts: Buffer[] = [];
  private inlineBytes = 0;
  private failed: ProtocolErrorKind | undefined;

  /** Feeds one chunk; returns the requests it completed and, at most once, a protocol error. */
  decode(chunk: Buffer): DecodeResult {
    const requests: RequestArgs[] = [];
    if (this.failed) return { requests };
    let i = 0;
    while (i < chunk.length) {
      const next = this.step(chunk, i, requests);
      if (this.failed) return { requests, error: this.failed };
      i = next;
    }
    return { requests };
  }

  /** Consumes bytes from `i`; returns the next offset. */
  private step(chunk: Buffer, i: number, out: RequestArgs[]): number {
    switch (this.state) {
      case 'start':
        return this.onStart(chunk, i);
      case 'arrayLength': {
        const next = this.readNumber(chunk[i], i);
        if (this.num.done) this.onArrayLength(out);
        return next;
      }
      case 'itemType':
        if (chunk[i] !== 0x24 /* $ */) return this.fail('expectTypeChar', i);
        resetNumber(this.num);
        this.state = 'bulkLength';
        return i + 1;
      case 'bulkLength': {
        const next = this.readNumber(chunk[i], i);
        if (this.num.done) this.onBulkLength(out);
        return next;
      }
      case 'bulkData':
        return this.onBulkData(chunk, i);
      case 'bulkCr':
        if (chunk[i] !== CR) return this.fail('expectNewline', i);
        this.state = 'bulkLf';
        return i + 1;
      case 'bulkLf':
        if (chunk[i] !== LF) return this.fail('expectNewline', i);
        this.pushArg(
          this.bulkParts.length === 1 ? this.bulkParts[0] : Buffer.concat(this.bulkParts),
          out,
        );
        this.bulkParts.length = 0;
        return i + 1;
      case 'inline':
        return this.onInline(chunk, i, out);
    }
  }

  private onStart(chunk: Buffer, i: number): number {
    if (chunk[i] === 0x2a /* * */) {
      resetNumber(this.num);
      this.state = 'arrayLength';
      return i + 1;
    }
    this.inlineParts = [];
    this.inlineBytes = 0;
    this.state = 'inline';
    return i;
  }

  /** Reads one byte of a length; sets `num.done` once its line ended. */
  private readNumber(byte: number, i: number): number {
    const num = this.num;
    if (num.sawCr) {
      if (byte !== LF) return this.fail('expectNewline', i);
      num.done = true;
      return i + 1;
    }
    if (byte >= 0x30 && byte <= 0x39) {
      num.digits += 1;
      num.value = Math.min(num.value * 10 + (byte - 0x30), NUMBER_CAP);
      return i + 1;
    }
    if (byte === MINUS && num.digits === 0 && !num.negative) {
      num.negative = true;
      return i + 1;
    }
    if (byte === CR && num.digits > 0) {
      num.sawCr = true;
      return i + 1;
    }
    return this.fail('expectNumber', i);
  }

  private onArrayLength(out: RequestArgs[]): void {
    const n = this.num.negative ? -this.num.value : this.num.value;
    if (n > MAX_ARGS || n < -1) {
      this.failed = 'tooManyArg';
      return;
    }
    this.state = 'start';
    if (n === -1) return;
    if (n === 0) {
      out.push([]);
      return;
    }
    this.expectedArgs = n;
    this.args = [];
    this.state = 'itemType';
  }

  private onBulkLength(out: RequestArgs[]): void {
    const len = this.num.negative ? -this.num.value : this.num.value;
    if (len > MAX_BULK_BYTES || len < -1) {
      this.failed = 'invalidBulkSize';
      return;
    }
    if (len === -1) {
      this.pushArg(null, out);
      return;
    }
    this.bulkRemaining = len;
    this.bulkParts.length = 0;
    this.state = len === 0 ? 'bulkCr' : 'bulkData';
  }

  private onBulkData(chunk: Buffer, i: number): number {
    const take = Math.min(this.bulkRemaining, chunk.length - i);
    // Copy: the socket may reuse its buffer, and arguments outlive this chunk.
    this.bulkParts.push(Buffer.from(chunk.subarray(i, i + take)));
    this.bulkRemaining -= take;
    if (this.bulkRemaining === 0) this.state = 'bulkCr';
    return i + take;
  }

  private pushArg(arg: Buffer | null, out: RequestArgs[]): void {
    this.args.push(arg);
    if (this.args.length < this.expectedArgs) {
      this.state = 'itemType';
      return;
    }
    out.push(this.args);
    this.args = [];
    this.state = 'start';
  }

  private onInline(chunk: Buffer, i: number, out: RequestArgs[]): number {
    const lf = chunk.indexOf(LF, i);
    const end = lf === -1 ? chunk.length : lf;
    if (end > i) {
      this.inlineParts.push(Buffer.from(chunk.subarray(i, end)));
      this.inlineBytes += end - i;
    }
    // One byte of slack for the `\r` that may precede the `\n` of a full-length line.
    if (this.inlineBytes > MAX_INLINE_BYTES + 1) return this.fail('lineTooLong', end);
    if (lf === -1) return end;
    let line = Buffer.concat(this.inlineParts);
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    if (line.length > MAX_INLINE_BYTES) return this.fail('lineTooLong', lf);
    this.inlineParts = [];
    this.inlineBytes = 0;
    this.state = 'start';
    if (line.length > 0) out.push(splitInline(line));
    return lf + 1;
  }

  private fail(kind: ProtocolErrorKind, i: number): number {
    this.failed = kind;
    return i + 1;
  }
}

/** Splits an inline line on single spaces, without quoting: two spaces give an empty argument. */
export function splitInline(line: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (;;) {
    const space = line.indexOf(0x20, from);
    if (space === -1) {
      parts.push(line.subarray(from));
      return parts;
    }
    parts.push(line.subarray(from, space));
    from = space + 1;
  }
}
