// Spec §7 A16, second half: Kafka stopped behind the project's rafka. A private broker stands in
// for Kafka here, since the shared one must never be stopped.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { eventually } from '../helpers/net.js';
import { privateKafka } from '../helpers/private-kafka.js';
import { uniqueId } from '../helpers/services.js';
import { boot, files, metric, post, tempDir } from './helpers/harness.js';
import { startRafka } from './helpers/services.js';

interface Readyz {
  status: number;
  sinks: Record<string, { state: string; spool_bytes: number } | undefined>;
}

async function readyz(admin: string): Promise<Readyz> {
  const res = await fetch(`${admin}/readyz`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { sinks: Readyz['sinks'] };
  return { status: res.status, sinks: body.sinks };
}

const idOf = (value: string | null): string => (JSON.parse(value ?? '{}') as { id: string }).id;

/** The archive's raw lines by id: the bytes the rafka sink must have delivered. */
function archiveLines(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of files(root)) {
    for (const line of readFileSync(file, 'utf8').split('\n'))
      if (line !== '') out.set(idOf(line), line);
  }
  return out;
}

t.test(
  'A16: with Kafka stopped behind rafka the sink retries, spools, and loses nothing',
  async (t) => {
    const kafka = await privateKafka(t);
    t.comment(
      `private broker: format ${kafka.formatMs} ms, answered ${kafka.lastBootMs} ms after its start`,
    );
    const base = uniqueId('scr');
    const topic = `${base}.gr`;
    await kafka.createTopics([topic]);
    const dir = tempDir(t);
    const rafka = await startRafka(t, dir, kafka.brokers);
    if ('notBuilt' in rafka) throw new Error(rafka.notBuilt);
    const app = await boot(
      t,
      {
        tenants: { gr: { hosts: ['*'], sinks: ['archive', 'rafka'] } },
        sinks: {
          archive: { type: 'file', linger_ms: 5 },
          rafka: {
            type: 'rafka',
            url: rafka.url,
            topic: `${base}.{tenant}`,
            linger_ms: 10,
            // Each failing write waits one DUMP; a short one makes the outage show quickly.
            dump_timeout_ms: 1000,
            unhealthy_after: 2,
            backoff_base_ms: 50,
            backoff_max_ms: 500,
          },
        },
      },
      { dir },
    );
    const ids: string[] = [];
    const send = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i += 1) {
        const id = `ro-${ids.length}`;
        const res = await post(`${app.base}/e`, JSON.stringify({ id }));
        t.equal(res.status, 202, `answered ${id}`);
        ids.push(id);
      }
    };
    const hasAll = (want: readonly string[]) => (records: readonly { value: string | null }[]) => {
      const got = new Set(records.map((r) => idOf(r.value)));
      return want.every((id) => got.has(id));
    };

    await send(10);
    await kafka.read(topic, hasAll(ids), 30_000);
    t.pass('before the outage, events reach Kafka through rafka');

    await kafka.stop();
    const outageStart = ids.length;
    await send(20);
    // The sink's probe is PING (§2), which rafka answers with Kafka down, so `unhealthy` lasts
    // only one backoff step before `replaying`; polling /readyz can miss it. The transition's
    // log line cannot be missed.
    await app.cli.waitForLine(/^(?=.*"msg":"sink_unhealthy")(?=.*"sink":"rafka")/, 30_000);
    const retries = await metric(app.admin, 'scratchd_sink_write_errors_total', {
      sink: 'rafka',
      reason: 'retryable',
    });
    t.ok(retries >= 2, `the sink retried before giving up on Kafka (${retries} failed writes)`);
    await send(10);
    await eventually(
      async () => (await metric(app.admin, 'scratchd_spool_spilled_total', { sink: 'rafka' })) > 0,
      30_000,
    );
    const during = await readyz(app.admin);
    t.ok((during.sinks.rafka?.spool_bytes ?? 0) > 0, 'the rafka spool holds the outage');
    t.equal(during.status, 200, '/readyz stays 200 while the spool has room');
    t.equal(during.sinks.archive?.state, 'healthy', 'the archive is not held up');

    await kafka.start();
    t.comment(`private broker answered ${kafka.lastBootMs} ms after its restart`);
    const records = await kafka.read(topic, hasAll(ids), 60_000);
    t.pass(
      `every answered id reached Kafka after it returned (${ids.length - outageStart} sent during the outage)`,
    );
    await eventually(
      async () => (await readyz(app.admin)).sinks.rafka?.state === 'healthy',
      30_000,
    );
    const spoolDir = join(app.dataDir, 'spool', 'rafka');
    await eventually(
      () => readdirSync(spoolDir).filter((f) => f.endsWith('.seg')).length === 0,
      30_000,
    );
    t.pass('the sink is healthy again and its replayed segments are deleted');
    t.ok(
      (await metric(app.admin, 'scratchd_spool_replayed_total', { sink: 'rafka' })) > 0,
      'the spooled events were replayed',
    );

    t.equal(await app.cli.stop('SIGTERM'), 0, 'scratchd stops cleanly');
    const lines = archiveLines(join(app.dataDir, 'events'));
    t.equal(lines.size, ids.length, 'the archive has every answered id');
    t.ok(
      records.every((r) => r.value === lines.get(idOf(r.value))),
      'every Kafka value is byte-equal to its envelope (retries may repeat one)',
    );
  },
);
