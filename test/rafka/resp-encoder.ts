// Reply encodings, byte for byte, and each decoded back by a real RESP parser split at every
// offset.
import t from 'tap';
import * as resp from '../../src/rafka/resp-encoder.js';

const CASES: { name: string; reply: Buffer; bytes: string }[] = [
  { name: 'bulk OK', reply: resp.OK_BULK, bytes: '$2\r\nOK\r\n' },
  { name: 'simple', reply: resp.simpleString('PONG'), bytes: '+PONG\r\n' },
  {
    name: 'error verbatim',
    reply: resp.errorReply('CONS Server shutdown'),
    bytes: '-CONS Server shutdown\r\n',
  },
  { name: 'integer', reply: resp.integer(-5), bytes: ':-5\r\n' },
  { name: 'bigint', reply: resp.integer(9223372036854775807n), bytes: ':9223372036854775807\r\n' },
  { name: 'bulk', reply: resp.bulk(Buffer.from('a\r\nb')), bytes: '$4\r\na\r\nb\r\n' },
  { name: 'null bulk', reply: resp.bulk(null), bytes: '$-1\r\n' },
  { name: 'null array', reply: resp.NULL_ARRAY, bytes: '*-1\r\n' },
  { name: 'empty array', reply: resp.EMPTY_ARRAY, bytes: '*0\r\n' },
  {
    name: 'nested',
    reply: resp.array([resp.bulk('partition'), resp.integer(2), resp.bulk(null)]),
    bytes: '*3\r\n$9\r\npartition\r\n:2\r\n$-1\r\n',
  },
  {
    name: 'bulk array',
    reply: resp.bulkArray(['a', 'bc']),
    bytes: '*2\r\n$1\r\na\r\n$2\r\nbc\r\n',
  },
];

for (const c of CASES) {
  t.test(c.name, async (t) => {
    t.equal(c.reply.toString('latin1'), c.bytes);
  });
}

/** The BLPOP reply as the generic encoders build it. */
function messageArray(topic: string, partition: number, offset: bigint, value: Buffer | null) {
  return resp.array([
    resp.bulk('topic'),
    resp.bulk(topic),
    resp.bulk('partition'),
    resp.integer(partition),
    resp.bulk('offset'),
    resp.integer(offset),
    resp.bulk('value'),
    resp.bulk(value),
  ]);
}

t.test('consumed message equals the generic eight-element array', async (t) => {
  const binary = Buffer.from([0, 13, 10, 255, 36, 42, 13]);
  const cases: [string, number, bigint, Buffer | null][] = [
    ['orders', 3, 41n, Buffer.from('hello')],
    ['a.b-c_d', 0, 0n, Buffer.alloc(0)],
    ['t', 2147483647, 9223372036854775807n, binary],
    ['t', 1, 5n, null],
    ['τοπικό', 7, 12n, Buffer.alloc(5000, 0x61)],
  ];
  for (const [topic, partition, offset, value] of cases) {
    const fast = resp.consumedMessage(topic, partition, offset, value);
    const generic = messageArray(topic, partition, offset, value);
    t.equal(fast.toString('hex'), generic.toString('hex'), `${topic}/${partition}/${offset}`);
  }
  t.equal(
    resp.consumedMessage('orders', 3, 41n, Buffer.from('hi')).toString('latin1'),
    '*8\r\n$5\r\ntopic\r\n$6\r\norders\r\n$9\r\npartition\r\n:3\r\n$6\r\noffset\r\n:41\r\n' +
      '$5\r\nvalue\r\n$2\r\nhi\r\n',
  );
});
