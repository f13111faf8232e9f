// Argument parsing whose texts are contractual: Go ParseInt errors, BLPOP and DUMP timeouts.
import t from 'tap';
import {
  blpopTimeoutMs,
  dumpTimeoutMs,
  nextPosition,
  parseGoInt,
  splitN,
} from '../../src/rafka/arguments.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

t.test('ParseInt base 0 (offsets)', async (t) => {
  const cases: [string, bigint | string][] = [
    ['10', 10n],
    ['-5', -5n],
    ['+7', 7n],
    ['0x10', 16n],
    ['010', 8n],
    ['0', 0n],
    ['9223372036854775807', 9223372036854775807n],
    ['9223372036854775808', 'strconv.ParseInt: parsing "9223372036854775808": value out of range'],
    ['abc', 'strconv.ParseInt: parsing "abc": invalid syntax'],
    ['', 'strconv.ParseInt: parsing "": invalid syntax'],
    ['08', 'strconv.ParseInt: parsing "08": invalid syntax'],
    ['1.5', 'strconv.ParseInt: parsing "1.5": invalid syntax'],
    // Around the plain-digits fast path: 15 digits fit it, 16 take the general parser.
    ['7', 7n],
    ['999999999999999', 999999999999999n],
    ['1000000000000000', 1000000000000000n],
    ['12a', 'strconv.ParseInt: parsing "12a": invalid syntax'],
    ['1_000', 1000n],
  ];
  for (const [input, want] of cases) {
    const got = parseGoInt(b(input), 0, 64);
    t.same(
      got,
      typeof want === 'bigint' ? { ok: true, value: want } : { ok: false, error: want },
      input,
    );
  }
});

t.test('ParseInt base 10, 32 bits (partitions)', async (t) => {
  t.same(parseGoInt(b('2147483647'), 10, 32), { ok: true, value: 2147483647n });
  t.same(parseGoInt(b('007'), 10, 32), { ok: true, value: 7n });
  t.same(parseGoInt(b('1_0'), 10, 32), {
    ok: false,
    error: 'strconv.ParseInt: parsing "1_0": invalid syntax',
  });
  t.same(parseGoInt(b('2147483648'), 10, 32), {
    ok: false,
    error: 'strconv.ParseInt: parsing "2147483648": value out of range',
  });
  t.same(parseGoInt(b('0x1'), 10, 32), {
    ok: false,
    error: 'strconv.ParseInt: parsing "0x1": invalid syntax',
  });
});

t.test('positions wrap like int64', async (t) => {
  t.equal(nextPosition(-5n), -4n);
  t.equal(nextPosition(-1n), 0n);
  t.equal(nextPosition(9223372036854775807n), -9223372036854775808n);
});

t.test('BLPOP timeouts', async (t) => {
  const cases: [string | null, number][] = [
    ['5', 5000],
    ['0.3', 300],
    ['1.0', 1000],
    ['2e1', 20000],
    ['0', 7000],
    ['-1', 7000],
    ['abc', 7000],
    [null, 7000],
    ['inf', 7000],
    ['99999999', 2_147_483_000],
  ];
  for (const [input, want] of cases)
    t.equal(blpopTimeoutMs(input === null ? null : b(input), 7), want, String(input));
});

t.test('DUMP timeouts', async (t) => {
  t.equal(dumpTimeoutMs(b('5000')), 5000);
  t.equal(dumpTimeoutMs(b('-3')), -3);
  t.equal(dumpTimeoutMs(b('x')), undefined);
  t.equal(dumpTimeoutMs(b('1.5')), undefined);
});

t.test('splitN keeps colons in the last part', async (t) => {
  t.same(splitN(b('topics:t:a:b'), 3).map(String), ['topics', 't', 'a:b']);
  t.same(splitN(b('topics'), 3).map(String), ['topics']);
  t.same(splitN(b('topics:t:'), 3).map(String), ['topics', 't', '']);
});
