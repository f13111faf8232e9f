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

function toBytes(value: string | Buffer): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}
