// The RESP request decoder, fed each input whole, byte by byte and split at every offset.
import t from 'tap';
import {
  MAX_BULK_BYTES,
  RespDecoder,
  splitInline,
  type DecodeResult,
  type ProtocolErrorKind,
} from '../../src/rafka/resp-decoder.js';

interface Case {
  name: string;
  input: string;
  /** Expected requests, arguments as latin1 strings; null is a null bulk. */
  requests: (string | null)[][];
  error?: ProtocolErrorKind;
}

const CASES: Case[] = [
  { name: 'multibulk', input: '*2\r\n$4\r\nPING\r\n$3\r\nabc\r\n', requests: [['PING', 'abc']] },
  {
    name: 'pipelined mixed forms',
    input: '*1\r\n$4\r\nPING\r\nPING a b\r\nQUIT\n',
    requests: [['PING'], ['PING', 'a', 'b'], ['QUIT']],
  },
  { name: 'binary bulk with CRLF inside', input: '*1\r\n$4\r\na\r\nb\r\n', requests: [['a\r\nb']] },
  { name: 'empty bulk', input: '*2\r\n$0\r\n\r\n$1\r\nx\r\n', requests: [['', 'x']] },
  {
    name: 'null bulk',
    input: '*3\r\n$6\r\nRPUSHX\r\n$8\r\ntopics:t\r\n$-1\r\n',
    requests: [['RPUSHX', 'topics:t', null]],
  },
  { name: '*-1 is ignored', input: '*-1\r\nPING\r\n', requests: [['PING']] },
  { name: '*0 is an empty request', input: '*0\r\n', requests: [[]] },
  { name: 'inline double spaces give empty args', input: 'a  b\r\n', requests: [['a', '', 'b']] },
  { name: 'empty inline lines are ignored', input: '\r\n\n\nPING\n', requests: [['PING']] },
  {
    name: 'inline line of exactly 1024 bytes',
    input: `${'x'.repeat(1024)}\r\n`,
    requests: [['x'.repeat(1024)]],
  },
  { name: '21 arguments', input: '*21\r\n', requests: [], error: 'tooManyArg' },
  {
    name: '20 arguments',
    input: `*20\r\n${'$1\r\na\r\n'.repeat(20)}`,
    requests: [Array<string>(20).fill('a')],
  },
  { name: 'array length below -1', input: '*-2\r\n', requests: [], error: 'tooManyArg' },
  {
    name: 'bulk too large',
    input: `*1\r\n$${MAX_BULK_BYTES + 1}\r\n`,
    requests: [],
    error: 'invalidBulkSize',
  },
  { name: 'bulk below -1', input: '*1\r\n$-2\r\n', requests: [], error: 'invalidBulkSize' },
  { name: 'wrong item type', input: '*1\r\n:4\r\n', requests: [], error: 'expectTypeChar' },
  { name: 'non-digit length', input: '*1\r\n$x\r\n', requests: [], error: 'expectNumber' },
  { name: 'non-digit array length', input: '*a\r\n', requests: [], error: 'expectNumber' },
  { name: 'empty length', input: '*\r\n', requests: [], error: 'expectNumber' },
  { name: 'missing LF after length', input: '*1\rx', requests: [], error: 'expectNewline' },
  {
    name: 'missing CRLF after bulk',
    input: '*1\r\n$1\r\nabc',
    requests: [],
    error: 'expectNewline',
  },
  { name: 'inline too long', input: `${'x'.repeat(1025)}\r\n`, requests: [], error: 'lineTooLong' },
  {
    name: 'commands before an error are kept',
    input: 'PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$x',
    requests: [['PING'], ['PING']],
    error: 'expectNumber',
  },
];

function show(result: { requests: (Buffer | null)[][]; error?: string }) {
  return {
    requests: result.requests.map((args) =>
      args.map((a) => (a === null ? null : a.toString('latin1'))),
    ),
    error: result.error,
  };
}

function feed(chunks: Buffer[]) {
  const decoder = new RespDecoder();
  const all: DecodeResult = { requests: [] };
  for (const chunk of chunks) {
    const { requests, error } = decoder.decode(chunk);
    all.requests.push(...requests);
    if (error) all.error ??= error;
  }
  return show(all);
}

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const bytes = Buffer.from(c.input, 'latin1');
    const expected = { requests: c.requests, error: c.error };
    t.same(feed([bytes]), expected, 'whole');
    t.same(feed([...bytes].map((b) => Buffer.from([b]))), expected, 'byte by byte');
    for (let i = 1; i < bytes.length; i++) {
      const got = feed([bytes.subarray(0, i), bytes.subarray(i)]);
      if (!t.same(got, expected, `split at ${i}`)) break;
    }
  });
}

t.test('decoding stops after a protocol error', async (t) => {
  const decoder = new RespDecoder();
  t.equal(decoder.decode(Buffer.from('*x')).error, 'expectNumber');
  t.same(decoder.decode(Buffer.from('PING\r\n')).requests, []);
});

t.test('a large bulk split in many chunks arrives whole', async (t) => {
  const value = Buffer.alloc(3_000_000, 7);
  const frame = Buffer.concat([
    Buffer.from(`*1\r\n$${value.length}\r\n`),
    value,
    Buffer.from('\r\n'),
  ]);
  const decoder = new RespDecoder();
  const out: (Buffer | null)[][] = [];
  for (let i = 0; i < frame.length; i += 65_536)
    out.push(...decoder.decode(frame.subarray(i, i + 65_536)).requests);
  t.equal(out.length, 1);
  t.ok((out[0]?.[0] as Buffer).equals(value));
});

t.test('splitInline keeps empty parts', async (t) => {
  t.same(splitInline(Buffer.from(' a ')).map(String), ['', 'a', '']);
});
