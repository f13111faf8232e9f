/**
 * RESP reply encoding. Every reply is built as one Buffer so a batch of replies can be coalesced
 * into a single socket write. Texts and bulks are bytes: names and topics are echoed exactly.
 */

const CRLF = '\r\n';

export type BulkValue = Buffer | string | null;

export const OK_BULK = Buffer.from('$2\r\nOK\r\n');
export const NULL_ARRAY = Buffer.from('*-1\r\n');
export const EMPTY_ARRAY = Buffer.from('*0\r\n');
export const PONG = Buffer.from('+PONG\r\n');
export const OK_SIMPLE = Buffer.from('+OK\r\n');
export const ONE = Buffer.from(':1\r\n');
export const ZERO = Buffer.from(':0\r\n');

export function simpleString(text: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from('+'), toBytes(text), Buffer.from(CRLF)]);
}

/** An error reply, verbatim: no `ERR` prefix is added. */
export function errorReply(text: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from('-'), toBytes(text), Buffer.from(CRLF)]);
}

export function integer(value: number | bigint): Buffer {
  return Buffer.from(`:${value.toString()}${CRLF}`);
}

export function bulk(value: BulkValue): Buffer {
  if (value === null) return Buffer.from(`$-1${CRLF}`);
  const bytes = toBytes(value);
  return Buffer.concat([Buffer.from(`$${bytes.length}${CRLF}`), bytes, Buffer.from(CRLF)]);
}

/** An array whose elements are already-encoded replies. */
export function array(elements: readonly Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(`*${elements.length}${CRLF}`), ...elements]);
}

export function bulkArray(values: readonly BulkValue[]): Buffer {
  return array(values.map(bulk));
}

/**
 * The BLPOP reply `topic <t> partition <p> offset <o> value <v>`, byte for byte what `array` of
 * the eight elements gives, built with one allocation and one copy of the value.
 */
export function consumedMessage(
  topic: string,
  partition: number,
  offset: bigint,
  value: Buffer | null,
): Buffer {
  const head =
    `*8${CRLF}$5${CRLF}topic${CRLF}$${Buffer.byteLength(topic, 'utf8')}${CRLF}${topic}${CRLF}` +
    `$9${CRLF}partition${CRLF}:${partition}${CRLF}$6${CRLF}offset${CRLF}:${offset}${CRLF}` +
    `$5${CRLF}value${CRLF}${value === null ? '$-1' : `$${value.length}`}${CRLF}`;
  if (value === null) return Buffer.from(head, 'utf8');
  const headLength = Buffer.byteLength(head, 'utf8');
  const reply = Buffer.allocUnsafe(headLength + value.length + 2);
  reply.write(head, 0, 'utf8');
  value.copy(reply, headLength);
  reply.write(CRLF, headLength + value.length, 'latin1');
  return reply;
}

function toBytes(value: string | Buffer): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}
