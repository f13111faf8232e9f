// Spool framing and recovery (spec §3.9): records whole, split at every offset, torn and corrupt.
import { appendFileSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { encodeRecord, scanRecords, SPOOL_HEADER } from '../../src/scratchd/framing.js';
import { Spool } from '../../src/scratchd/spool.js';
import { tempDir } from './helpers/harness.js';

const payloads = ['{"id":"a"}', '{"id":"bb","x":"é"}', '', '{"id":"c"}'].map((s) => Buffer.from(s));
const stream = Buffer.concat(payloads.map(encodeRecord));

t.test('a whole stream decodes to every record', async (t) => {
  const scan = scanRecords(stream);
  t.equal(scan.stop, 'end');
  t.equal(scan.end, stream.length);
  t.same(scan.records.map(String), payloads.map(String));
});

t.test(
  'a stream cut at every offset yields the whole records before the cut, then torn',
  async (t) => {
    const boundaries = [0];
    for (const p of payloads) boundaries.push((boundaries.at(-1) ?? 0) + 8 + p.length);
    for (let cut = 0; cut <= stream.length; cut += 1) {
      const scan = scanRecords(stream.subarray(0, cut));
      const whole = boundaries.filter((b) => b <= cut).length - 1;
      t.equal(scan.records.length, whole, `cut ${cut}: records`);
      t.equal(scan.end, boundaries[whole], `cut ${cut}: end`);
      t.equal(scan.stop, boundaries.includes(cut) ? 'end' : 'torn', `cut ${cut}: stop`);
    }
  },
);

t.test('a flipped payload byte is corrupt at that record', async (t) => {
  for (let at = 8; at < stream.length; at += 1) {
    const copy = Buffer.from(stream);
    const before = scanRecords(stream.subarray(0, at)).records.length;
    copy[at] = (copy[at] ?? 0) ^ 0xff;
    const scan = scanRecords(copy);
    t.ok(scan.records.length <= before + 1, `flip ${at}`);
    t.not(scan.stop, 'end', `flip ${at} is noticed`);
  }
});

function spoolAt(dir: string, maxBytes = 1 << 30, segmentBytes = 1 << 20): Spool {
  return new Spool({ dir, maxBytes, segmentBytes, fsyncMs: 5 });
}

t.test(
  'append, read, commit in FIFO order across segments; finished segments are deleted',
  async (t) => {
    const dir = tempDir(t);
    const spool = spoolAt(dir, 1 << 30, 64);
    spool.recover();
    for (let i = 0; i < 10; i += 1) t.ok(spool.append(Buffer.from(`{"id":"e${i}"}`)));
    await spool.flush();
    t.ok(readdirSync(dir).filter((f) => f.endsWith('.seg')).length > 2, 'several segments');
    const got: string[] = [];
    for (;;) {
      const batch = await spool.read(3, 1 << 20);
      if (batch === undefined) break;
      got.push(...batch.records.map(String));
      await spool.commit(batch);
    }
    t.same(
      got,
      Array.from({ length: 10 }, (_, i) => `{"id":"e${i}"}`),
    );
    t.notOk(spool.hasData);
    t.same(
      readdirSync(dir).filter((f) => f.endsWith('.seg')),
      [],
      'segments deleted once delivered',
    );
    await spool.close();
  },
);

t.test(
  'recovery resumes at the cursor, truncates a torn tail and quarantines a bad record',
  async (t) => {
    const dir = tempDir(t);
    const first = spoolAt(dir, 1 << 30, 50);
    first.recover();
    for (let i = 0; i < 8; i += 1) first.append(Buffer.from(`{"id":"r${i}"}`));
    await first.flush();
    const batch = await first.read(2, 1 << 20);
    if (batch === undefined) throw new Error('no batch');
    await first.commit(batch);
    await first.close();
    const segs = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort();
    const last = join(dir, segs.at(-1) ?? '');
    const size = readFileSync(last).length;
    truncateSync(last, size - 3);
    const middle = join(dir, segs[1] ?? '');
    const bytes = readFileSync(middle);
    bytes[SPOOL_HEADER.length + 9] = 0x00;
    bytes[SPOOL_HEADER.length + 10] = 0x01;
    writeFileSync(middle, bytes);
    const second = spoolAt(dir, 1 << 30, 50);
    const report = second.recover();
    t.equal(report.corrupt, 2, 'one torn tail, one bad record');
    t.ok(
      readdirSync(join(dir, 'corrupt')).length >= 1,
      'the rest of the bad segment is quarantined',
    );
    const got: string[] = [];
    for (;;) {
      const b = await second.read(10, 1 << 20);
      if (b === undefined) break;
      got.push(...b.records.map((r) => (JSON.parse(String(r)) as { id: string }).id));
      await second.commit(b);
    }
    // 19-byte records in 50-byte segments: [r0 r1 r2] [r3 r4 r5] [r6 r7]. r0 and r1 were acked,
    // the middle segment is bad from r3 on, r7 is torn: what is left intact is r2 and r6.
    t.same(got, ['r2', 'r6'], 'every intact, unacked record, in order');
    appendFileSync(join(dir, 'unrelated.txt'), 'x');
    await second.close();
  },
);

t.test('a full spool refuses appends', async (t) => {
  const dir = tempDir(t);
  const spool = spoolAt(dir, 64);
  spool.recover();
  let accepted = 0;
  while (spool.append(Buffer.alloc(20, 0x61))) accepted += 1;
  t.ok(accepted >= 1 && accepted <= 3, `accepted ${accepted}`);
  t.ok(spool.full);
  await spool.close();
});
