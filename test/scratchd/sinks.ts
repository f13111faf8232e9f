// Sinks against real services: spec §7 A14 (redis), A15 and A21 (kafka), A16 (rafka), A13 (file).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { EXECUTABLE, runCli } from '../helpers/cli.js';
import { eventually } from '../helpers/net.js';
import { KAFKA_BROKERS, kafkaClient, redisForTest, uniqueId } from '../helpers/services.js';
import { archived, boot, files, httpRequest, post, tempDir } from './helpers/harness.js';
import { consumeTopic, createTopics, startRafka } from './helpers/services.js';

/** The archive's raw lines by id: the bytes every other sink must have received. */
function archiveLines(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of files(root)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line !== '') out.set((JSON.parse(line) as { id: string }).id, line);
    }
  }
  return out;
}

async function sendMixed(
  base: string,
  host: string,
  prefix: string,
  count: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const id = `${prefix}-${i}`;
    ids.push(id);
    if (i % 2 === 0) {
      await httpRequest(`${base}/track?id=${id}&e=pv`, {
        headers: { host, 'user-agent': 'Mozilla/5.0', cookie: `_scr_v=${'v'.repeat(21)}${i % 3}` },
      });
    } else {
      await post(`${base}/e`, JSON.stringify({ id, type: 'click' }), { host });
    }
  }
  return ids;
}

t.test('A14: redis stream and list entries are byte-equal to the envelope, in order', async (t) => {
  const { redis, prefix } = redisForTest(t);
  const app = await boot(t, {
    tenants: {
      gr: { hosts: ['gr.test'], sinks: ['archive', 'stream', 'list'] },
      uk: { hosts: ['uk.test'], sinks: ['archive', 'stream'] },
    },
    sinks: {
      archive: { type: 'file', linger_ms: 5 },
      stream: {
        type: 'redis',
        url: 'redis://127.0.0.1:6379',
        key: `${prefix}s:{tenant}`,
        linger_ms: 5,
      },
      list: {
        type: 'redis',
        url: 'redis://127.0.0.1:6379',
        mode: 'list',
        key: `${prefix}l:{tenant}`,
        linger_ms: 5,
      },
    },
  });
  const grIds = await sendMixed(app.base, 'gr.test', 'gr', 20);
  const ukIds = await sendMixed(app.base, 'uk.test', 'uk', 6);
  await eventually(
    async () =>
      (await redis.xlen(`${prefix}s:gr`)) === 20 &&
      (await redis.llen(`${prefix}l:gr`)) === 20 &&
      (await redis.xlen(`${prefix}s:uk`)) === 6,
  );
  t.equal(await app.cli.stop('SIGTERM'), 0);
  const lines = archiveLines(join(app.dataDir, 'events'));
  const stream = (await redis.xrange(`${prefix}s:gr`, '-', '+')).map(([, fields]) => {
    t.equal(fields[0], 'e', 'stream field name');
    return fields[1] ?? '';
  });
  const list = await redis.lrange(`${prefix}l:gr`, 0, -1);
  t.same(
    stream.map((s) => (JSON.parse(s) as { id: string }).id),
    grIds,
    'stream in order',
  );
  t.same(
    list.map((s) => (JSON.parse(s) as { id: string }).id),
    grIds,
    'list in order',
  );
  for (const entry of [...stream, ...list])
    t.equal(entry, lines.get((JSON.parse(entry) as { id: string }).id), 'byte-equal');
  const uk = (await redis.xrange(`${prefix}s:uk`, '-', '+')).map(
    ([, f]) => (JSON.parse(f[1] ?? '') as { id: string }).id,
  );
  t.same(uk, ukIds, 'uk went to its own key');
  t.equal(await redis.exists(`${prefix}l:uk`), 0, 'uk has no list sink');
});

t.test(
  'A15 + A21: kafka topic per tenant, keyed by visitor, oversize events dead-lettered',
  async (t) => {
    const base = uniqueId('scr');
    await createTopics(t, [
      { topic: `${base}.gr`, numPartitions: 3 },
      { topic: `${base}.uk` },
      { topic: `${base}.small`, configEntries: [{ name: 'max.message.bytes', value: '4096' }] },
    ]);
    const app = await boot(t, {
      tenants: {
        gr: { hosts: ['gr.test'], sinks: ['kafka'] },
        uk: { hosts: ['uk.test'], sinks: ['kafka'] },
        small: { hosts: ['small.test'], sinks: ['kafka'] },
      },
      sinks: {
        kafka: {
          type: 'kafka',
          brokers: KAFKA_BROKERS,
          topic: `${base}.{tenant}`,
          linger_ms: 20,
          compression: 'none',
        },
      },
    });
    const visitors = ['aaaaaaaaaaaaaaaaaaaaa1', 'bbbbbbbbbbbbbbbbbbbbb2', 'ccccccccccccccccccccc3'];
    const sent: { id: string; visitor: string }[] = [];
    for (let i = 0; i < 30; i += 1) {
      const visitor = visitors[i % 3] ?? '';
      const id = `k-${i}`;
      sent.push({ id, visitor });
      const res = await httpRequest(`${app.base}/track?id=${id}`, {
        headers: { host: 'gr.test', 'user-agent': 'Mozilla/5.0', cookie: `_scr_v=${visitor}` },
      });
      t.equal(res.status, 200);
    }
    await post(`${app.base}/e`, JSON.stringify({ id: 'k-uk' }), { host: 'uk.test', dnt: '1' });
    const props: Record<string, string> = {};
    for (let i = 0; i < 8; i += 1)
      props[`p${i}`] = randomBytes(512).toString('base64').slice(0, 1000);
    const big = await post(
      `${app.base}/batch`,
      JSON.stringify([{ id: 'small-1' }, { id: 'small-big', props }, { id: 'small-2' }]),
      { host: 'small.test' },
    );
    t.equal(big.status, 202, 'accepted: the answer never waits on kafka');
    const gr = await consumeTopic(`${base}.gr`, 30);
    t.equal(gr.length, 30);
    for (const visitor of visitors) {
      const theirs = gr.filter((m) => m.key === visitor);
      t.same(
        theirs.map((m) => (JSON.parse(m.value) as { id: string }).id),
        sent.filter((s) => s.visitor === visitor).map((s) => s.id),
        `visitor ${visitor}: keyed, in order`,
      );
      t.equal(new Set(theirs.map((m) => m.partition)).size, 1, 'one partition per key');
    }
    const uk = await consumeTopic(`${base}.uk`, 1);
    t.same(
      uk.map((m) => (JSON.parse(m.value) as { id: string }).id),
      ['k-uk'],
    );
    t.equal(uk[0]?.key, 'k-uk', 'anonymized, no visitor: keyed by id');
    const small = await consumeTopic(`${base}.small`, 2);
    t.same(small.map((m) => (JSON.parse(m.value) as { id: string }).id).sort(), [
      'small-1',
      'small-2',
    ]);
    const deadDir = join(app.dataDir, 'dead', 'kafka');
    await eventually(() => readdirSync(deadDir).length > 0, 10_000);
    const dead = readFileSync(join(deadDir, readdirSync(deadDir)[0] ?? ''), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { sink: string; reason: string; event: { id: string } });
    t.equal(dead.length, 1);
    t.equal(dead[0]?.sink, 'kafka');
    t.match(dead[0]?.reason, /too large/);
    t.equal(dead[0]?.event.id, 'small-big');
    t.equal(await app.cli.stop('SIGTERM'), 0);

    // A27, second half: once the topic takes larger messages, replay delivers the dead letter.
    const admin = kafkaClient().admin();
    await admin.connect();
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          // ConfigResourceTypes.TOPIC: kafkajs's CommonJS build exports no such named binding to
          // ESM.
          type: 2,
          name: `${base}.small`,
          configEntries: [{ name: 'max.message.bytes', value: '1048576' }],
        },
      ],
    });
    await admin.disconnect();
    const replayed = await runCli(t, [
      'scratchd',
      'replay',
      '--config',
      app.configPath,
      '--sink',
      'kafka',
      '--from',
      deadDir,
      '--tenant',
      'small',
    ]);
    t.equal(replayed.code, 0, replayed.stderr);
    t.equal(replayed.stdout, 'read=1 written=1 skipped=0 failed=0');
    const after = await consumeTopic(`${base}.small`, 3);
    t.same(after.map((m) => (JSON.parse(m.value) as { id: string }).id).sort(), [
      'small-1',
      'small-2',
      'small-big',
    ]);
    const original = readFileSync(join(deadDir, readdirSync(deadDir)[0] ?? ''), 'utf8');
    const replayedBig = after.find((m) => m.value.includes('"small-big"'));
    t.ok(
      replayedBig !== undefined && original.includes(replayedBig.value),
      'replayed bytes are the original envelope',
    );
  },
);

// rafka is built in parallel on another branch; until it is merged, its placeholder exits 3.
const rafkaProbe = spawnSync(EXECUTABLE, ['rafka', '--help'], {
  encoding: 'utf8',
  timeout: 20_000,
});
const rafkaMissing =
  rafkaProbe.status === 3 && /not built yet/.test(rafkaProbe.stderr)
    ? 'rafka is not built yet in this tree'
    : false;

t.test(
  'A16: rafka sink through the project rafka into Kafka',
  { skip: rafkaMissing },
  async (t) => {
    const dir = tempDir(t);
    const rafka = await startRafka(t, dir);
    if ('notBuilt' in rafka) throw new Error(rafka.notBuilt);
    const base = uniqueId('scr');
    await createTopics(t, [{ topic: `${base}.gr` }]);
    const app = await boot(t, {
      tenants: { gr: { hosts: ['*'], sinks: ['archive', 'rafka'] } },
      sinks: {
        archive: { type: 'file', linger_ms: 5 },
        rafka: { type: 'rafka', url: rafka.url, topic: `${base}.{tenant}`, linger_ms: 10 },
      },
    });
    const ids = await sendMixed(app.base, 'gr.test', 'rf', 20);
    const got = await consumeTopic(`${base}.gr`, 20);
    t.equal(await app.cli.stop('SIGTERM'), 0);
    const lines = archiveLines(join(app.dataDir, 'events'));
    t.same(
      got.map((m) => (JSON.parse(m.value) as { id: string }).id).sort(),
      [...ids].sort(),
      'every event arrived',
    );
    for (const m of got)
      t.equal(
        m.value,
        lines.get((JSON.parse(m.value) as { id: string }).id),
        'byte-equal to the envelope',
      );
    // The second half of A16 (Kafka stopped behind rafka) is in rafka-outage.ts, on a private
    // broker: the shared one must never be stopped.
  },
);

t.test(
  'A13: file sink rotates by size and by age; a torn last line is cut after SIGKILL',
  async (t) => {
    const app = await boot(t, {
      tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
      sinks: {
        archive: { type: 'file', linger_ms: 1, segment_mb: 0.002, segment_s: 1, fsync_ms: 50 },
      },
    });
    for (let i = 0; i < 20; i += 1)
      await post(
        `${app.base}/e`,
        JSON.stringify({ id: `f-${i}`, props: { pad: 'x'.repeat(300) } }),
      );
    const root = join(app.dataDir, 'events');
    await eventually(() => files(root).filter((f) => f.endsWith('.jsonl')).length >= 2, 10_000);
    t.ok(
      files(root).every((f) =>
        /\/gr\/\d{4}-\d{2}-\d{2}\/test-1-\d{8}T\d{9}Z(-\d+)?\.jsonl(\.open)?$/.test(f),
      ),
      'names follow <tenant>/<day>/<instance>-<stamp>',
    );
    await eventually(() => files(root).every((f) => f.endsWith('.jsonl')), 10_000);
    t.pass('the age limit closed the last open file');
    await post(`${app.base}/e`, JSON.stringify({ id: 'f-last' }));
    // The tenant is `queued`: an event still in memory at SIGKILL may be lost (§3.9), so the kill
    // waits until f-last is a whole line in the open segment, which is the state A13 is about.
    // The segment file appears before its first write, so its mere existence is not enough.
    let open = '';
    await eventually(
      () => {
        open = files(root).find((f) => f.endsWith('.open')) ?? '';
        if (open === '') return false;
        const text = readFileSync(open, 'utf8');
        return text.endsWith('\n') && text.includes('"id":"f-last"');
      },
      5000,
      10,
    );
    t.equal(await app.cli.stop('SIGKILL'), 'SIGKILL');
    const { appendFileSync } = await import('node:fs');
    appendFileSync(open, '{"v":1,"id":"torn"');
    const again = await boot(
      t,
      {
        tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
        sinks: { archive: { type: 'file', linger_ms: 1 } },
      },
      { dir: app.dir },
    );
    const ids = archived(root).map((e) => e.id);
    t.ok(ids.includes('f-last'), 'the last whole line survived');
    t.notOk(ids.includes('torn'), 'the half line was cut');
    t.same(ids.filter((id) => String(id).startsWith('f-')).length, 21, 'every event once');
    t.notOk(
      files(root).some((f) => f.endsWith('.open') && f === open),
      'the .open file was closed',
    );
    t.equal(await again.cli.stop('SIGTERM'), 0);
  },
);
