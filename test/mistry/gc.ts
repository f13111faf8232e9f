// Garbage collection against a running server (spec §3.7, §7.2 GC): age and count remove the
// right builds; link targets and builds being downloaded survive; a collected ID is rebuilt.
import { readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { eventually, postJob, project, sandbox, startServer } from '../helpers/mistry.js';

const TWO_HOURS_AGO_S = () => Date.now() / 1000 - 7200;
const idOf = (answer: { json?: Record<string, unknown> }): string =>
  String(answer.json?.URL).split('/')[2];

t.test('age: old builds go, the link target and downloads in progress stay', async (t) => {
  const box = await sandbox(t);
  await project(box, 'gcp', {
    script: 'cat params/v > artifacts/v\nhead -c 16777216 /dev/zero > artifacts/big',
  });
  const { base } = await startServer(t, box, {
    gc: { interval_s: 1, max_age_h: 1, min_idle_s: 0 },
  });
  const ids: string[] = [];
  for (const v of ['1', '2', '3', '4'])
    ids.push(idOf(await postJob(base, { Project: 'gcp', Params: { v } })));
  const ready = (id: string) => join(box.build, 'gcp', 'ready', id);
  const [old, fresh, reading, linked] = ids as [string, string, string, string];
  const response = await fetch(`${base}/jobs/gcp/${reading}/artifacts.tar`);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  for (const id of [old, reading, linked])
    await utimes(ready(id), TWO_HOURS_AGO_S(), TWO_HOURS_AGO_S());

  await eventually(async () =>
    (await readdir(join(box.build, 'gcp', 'ready'))).includes(old) ? undefined : true,
  );
  await sleep(1500);
  const left = await readdir(join(box.build, 'gcp', 'ready'));
  t.notOk(left.includes(old), 'old build removed');
  t.ok(left.includes(fresh), 'recent build kept');
  t.ok(left.includes(linked), 'latest target kept');
  t.ok(left.includes(reading), 'build being downloaded kept');
  await reader.cancel();

  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(
    metrics,
    /^mistry_gc_removed_builds_total\{[^}]*project="gcp"[^}]*reason="age"[^}]*\} 1$/m,
  );
  t.match(metrics, /^mistry_gc_runs_total\{[^}]*\} [1-9]/m);
  const items = (await (await fetch(`${base}/index`)).json()) as { id: string }[];
  t.notOk(
    items.some((i) => i.id === old),
    'gone from the index',
  );
  const again = await postJob(base, { Project: 'gcp', Params: { v: '1' } });
  t.equal(again.status, 201);
  t.equal(again.json?.Cached, false, 'a collected ID is rebuilt');
  t.equal(idOf(again), old);
});

t.test('count: only the most recently used builds per project stay', async (t) => {
  const box = await sandbox(t);
  await project(box, 'gcc', { script: 'cat params/v > artifacts/v' });
  const server = await startServer(t, box, {
    gc: { interval_s: 3600, max_age_h: 0, keep_per_project: 2, min_idle_s: 0 },
  });
  const ids: string[] = [];
  for (const v of ['1', '2', '3', '4']) {
    ids.push(
      idOf(
        await postJob(server.base, {
          Project: 'gcc',
          Params: { v },
          Group: v === '1' ? 'keep' : '',
        }),
      ),
    );
  }
  const ready = (id: string) => join(box.build, 'gcc', 'ready', id);
  const now = Date.now() / 1000;
  for (const [i, id] of ids.entries()) await utimes(ready(id), now - 1000 + i, now - 1000 + i);
  t.equal(await server.cli.stop('SIGTERM'), 0);
  await startServer(t, box, {
    gc: { interval_s: 3600, max_age_h: 0, keep_per_project: 2, min_idle_s: 0 },
  });
  const [grouped, second, third, fourth] = ids as [string, string, string, string];
  await eventually(async () =>
    (await readdir(join(box.build, 'gcc', 'ready'))).length === 3 ? true : undefined,
  );
  const left = await readdir(join(box.build, 'gcc', 'ready'));
  t.ok(left.includes(grouped), 'group link target kept though least recently used');
  t.notOk(left.includes(second), 'least recently used unlinked build removed');
  t.ok(left.includes(third) && left.includes(fourth), 'two newest kept');
});
