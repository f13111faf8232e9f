// MONITOR lines: Redis escaping and the issuer's id.
import t from 'tap';
import { escapeArg, monitorLine } from '../../src/rafka/monitor-format.js';

t.test('Redis escaping', async (t) => {
  const cases: [Buffer, string][] = [
    [Buffer.from('a\r\nb'), 'a\\r\\nb'],
    [Buffer.from('q"\\'), 'q\\"\\\\'],
    [Buffer.from([0x07, 0x08, 0x09, 0x00, 0xff]), '\\a\\b\\t\\x00\\xff'],
    [Buffer.from('plain text'), 'plain text'],
  ];
  for (const [input, want] of cases) t.equal(escapeArg(input), want);
});

t.test('line format', async (t) => {
  const line = monitorLine(1_700_000_000_123, 456, 'app:c1', [
    Buffer.from('RPUSHX'),
    Buffer.from('a\nb'),
    null,
  ]);
  t.equal(line.toString(), '+1700000000.123456 [0 app:c1] "RPUSHX" "a\\nb" ""\r\n');
});
