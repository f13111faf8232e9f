// Incremental builds per group (spec §3.5, §7.2 incremental): a group's next build starts from
// its last successful one, failures are never linked, and links stay absolute and atomic.
import { readFile, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { postJob, project, sandbox, startServer } from '../helpers/mistry.js';

const idOf = (answer: { json?: Record<string, unknown> }): string =>
  String(answer.json?.URL).split('/')[2];

t.test('a group carries cache and artifacts into its next build', async (t) => {
  const box = await sandbox(t);
  await project(box, 'build-cache', {
    script: [
      '[ -f cache/out.txt ] || cat /proc/sys/kernel/random/uuid > cache/out.txt',
      'cp cache/out.txt artifacts/out.txt',
      'cat params/v > artifacts/v.txt',
    ].join('\n'),
  });
  await project(box, 'failed-build-link', {
    script: 'echo run >> cache/runs\nexit $(cat params/_exitcode)',
  });
  await project(box, 'copy-folder', {
    script: 'ls /koko > artifacts/list',
    dockerfile: ['COPY koko/ /koko/'],
    files: { 'koko/a.txt': 'a', 'koko/b.txt': 'b' },
  });
  const { base } = await startServer(t, box);

  const one = await postJob(base, { Project: 'build-cache', Group: 'baz', Params: { v: '1' } });
  t.equal(one.status, 201, one.text);
  t.equal(one.json?.Incremental, false);
  const oneReady = join(box.build, 'build-cache', 'ready', idOf(one));
  const cache = await readFile(join(oneReady, 'data', 'cache', 'out.txt'), 'utf8');
  t.equal(await readFile(join(oneReady, 'data', 'artifacts', 'out.txt'), 'utf8'), cache);
  t.equal(await readlink(join(box.build, 'build-cache', 'groups', 'baz')), oneReady);

  const two = await postJob(base, { Project: 'build-cache', Group: 'baz', Params: { v: '2' } });
  t.equal(two.json?.Incremental, true);
  const twoReady = join(box.build, 'build-cache', 'ready', idOf(two));
  t.equal(await readFile(join(twoReady, 'data', 'cache', 'out.txt'), 'utf8'), cache, 'same cache');
  t.equal(
    await readFile(join(twoReady, 'data', 'artifacts', 'v.txt'), 'utf8'),
    '2',
    'new artifacts',
  );
  t.equal(await readFile(join(twoReady, 'data', 'params', 'v'), 'utf8'), '2');
  t.equal(await readlink(join(box.build, 'build-cache', 'groups', 'baz')), twoReady, 'link moved');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /^mistry_builds_processed_incrementally\{[^}]*project="build-cache"[^}]*\} 1$/m);
  t.match(metrics, /^mistry_build_setup_seconds_count\{[^}]*incremental="true"[^}]*\} 1$/m);

  t.test('a dangling group link means a cold build', async (t) => {
    const link = join(box.build, 'build-cache', 'groups', 'cold');
    await symlink(join(box.build, 'build-cache', 'ready', 'f'.repeat(64)), link);
    const cold = await postJob(base, { Project: 'build-cache', Group: 'cold', Params: { v: '3' } });
    t.equal(cold.status, 201);
    t.equal(cold.json?.Incremental, false);
  });

  t.test('failures are not linked and do not become the base', async (t) => {
    const ok = await postJob(base, {
      Project: 'failed-build-link',
      Group: 'g',
      Params: { _exitcode: '0' },
    });
    t.equal(ok.json?.ExitCode, 0);
    const okReady = join(box.build, 'failed-build-link', 'ready', idOf(ok));
    const link = join(box.build, 'failed-build-link', 'groups', 'g');
    t.equal(await readlink(link), okReady);
    const bad = await postJob(base, {
      Project: 'failed-build-link',
      Group: 'g',
      Params: { _exitcode: '3', other: 'x' },
    });
    t.equal(bad.json?.ExitCode, 3);
    t.equal(bad.json?.Incremental, true);
    t.equal(await readlink(link), okReady, 'failure not linked');
    const again = await postJob(base, {
      Project: 'failed-build-link',
      Group: 'g',
      Params: { _exitcode: '3', other: 'x' },
    });
    t.equal(again.json?.Incremental, true, 'still from the success');
    t.equal(again.json?.Cached, false);
    const runs = await readFile(
      join(box.build, 'failed-build-link', 'ready', idOf(again), 'data', 'cache', 'runs'),
      'utf8',
    );
    t.equal(runs, 'run\nrun\n', 'cloned from the success, not from the failure');
  });

  t.test('COPY of a folder works', async (t) => {
    const answer = await postJob(base, { Project: 'copy-folder' });
    t.equal(answer.json?.ExitCode, 0, answer.text);
    t.equal(
      await readFile(
        join(box.build, 'copy-folder', 'ready', idOf(answer), 'data', 'artifacts', 'list'),
        'utf8',
      ),
      'a.txt\nb.txt\n',
    );
  });
});
