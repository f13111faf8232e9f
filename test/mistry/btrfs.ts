// The btrfs adapter on a loop-mounted btrfs image made for this test (spec §3.5, §7.2 btrfs):
// job dirs are subvolumes, incremental builds are snapshots, GC deletes subvolumes.
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { eventually, postJob, project, startServer, type Sandbox } from '../helpers/mistry.js';
import { dockerClient } from '../helpers/services.js';

const run = promisify(execFile);

async function canLoopMount(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop mounts';
  try {
    await run('mkfs.btrfs', ['--version']);
  } catch {
    return 'mkfs.btrfs missing (apt-get install btrfs-progs)';
  }
  return undefined;
}

/** A sandbox whose build_path is a fresh btrfs on a loop device, unmounted in teardown. */
async function btrfsSandbox(t: Test): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), 'mst-btrfs-'));
  const image = join(root, 'fs.img');
  const mountpoint = join(root, 'data');
  const projects = join(root, 'projects');
  await mkdir(mountpoint);
  await mkdir(projects);
  await run('truncate', ['-s', '320M', image]);
  await run('mkfs.btrfs', ['-q', image]);
  await run('mount', ['-o', 'loop', image, mountpoint]);
  t.teardown(async () => {
    const docker = dockerClient();
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`skroutz-infra.mistry.build-path=${mountpoint}`] },
    });
    for (const info of left) await docker.getContainer(info.Id).remove({ force: true });
    await run('umount', [mountpoint]).catch(() => run('umount', ['-l', mountpoint]));
    await rm(root, { recursive: true, force: true });
  });
  return { root, projects, build: mountpoint };
}

async function isSubvolume(path: string): Promise<boolean> {
  return (await lstat(path)).ino === 256;
}

t.test('btrfs adapter', async (t) => {
  const skip = await canLoopMount();
  if (skip) {
    t.comment(`skipped: ${skip}`);
    t.pass('btrfs not available here', { skip });
    return;
  }
  const box = await btrfsSandbox(t);
  await project(box, 'build-cache', {
    script: [
      '[ -f cache/out.txt ] || cat /proc/sys/kernel/random/uuid > cache/out.txt',
      'cp cache/out.txt artifacts/out.txt',
      'cat params/v > artifacts/v.txt',
    ].join('\n'),
  });
  const { base, cli } = await startServer(
    t,
    box,
    { gc: { interval_s: 1, max_age_h: 1, min_idle_s: 0 } },
    ['--filesystem', 'btrfs'],
  );
  t.match(cli.output(), /"filesystem":"btrfs"/);
  const one = await postJob(base, { Project: 'build-cache', Group: 'baz', Params: { v: '1' } });
  t.equal(one.status, 201, one.text);
  t.equal(one.json?.Incremental, false);
  const oneId = String(one.json?.URL).split('/')[2];
  const oneReady = join(box.build, 'build-cache', 'ready', oneId);
  t.ok(await isSubvolume(oneReady), 'ready entry is a subvolume');
  const cache = await readFile(join(oneReady, 'data', 'cache', 'out.txt'), 'utf8');

  const two = await postJob(base, { Project: 'build-cache', Group: 'baz', Params: { v: '2' } });
  t.equal(two.json?.Incremental, true);
  const twoId = String(two.json?.URL).split('/')[2];
  const twoReady = join(box.build, 'build-cache', 'ready', twoId);
  t.ok(await isSubvolume(twoReady), 'incremental build is a subvolume');
  const { stdout } = await run('btrfs', ['subvolume', 'show', twoReady]);
  t.match(stdout, /Parent UUID:\s+[0-9a-f-]{36}/, 'a snapshot of the group base');
  t.equal(
    await readFile(join(twoReady, 'data', 'cache', 'out.txt'), 'utf8'),
    cache,
    'cache carried',
  );
  t.equal(await readFile(join(twoReady, 'data', 'artifacts', 'v.txt'), 'utf8'), '2');

  const before = (await run('btrfs', ['subvolume', 'list', box.build])).stdout;
  t.match(before, oneId);
  const old = Date.now() / 1000 - 7200;
  await utimes(oneReady, old, old);
  await eventually(async () =>
    (await readdir(join(box.build, 'build-cache', 'ready'))).includes(oneId) ? undefined : true,
  );
  await eventually(async () => {
    const list = (await run('btrfs', ['subvolume', 'list', box.build])).stdout;
    return list.includes(oneId) ? undefined : true;
  });
  t.pass('GC deleted the subvolume');
  t.ok(await isSubvolume(twoReady), 'link target kept');
});

t.test('disk watermark GC on a small dedicated filesystem', async (t) => {
  const skip = await canLoopMount();
  if (skip) {
    t.pass('loop mounts not available here', { skip });
    return;
  }
  const box = await btrfsSandbox(t);
  await project(box, 'disk', {
    script: 'cat params/v > artifacts/v\nhead -c 8388608 /dev/zero > artifacts/fill',
  });
  const settings = {
    interval_s: 3600,
    max_age_h: 0,
    min_idle_s: 0,
    disk_high_pct: 1,
    disk_low_pct: 0,
  };
  const first = await startServer(t, box, { gc: { ...settings, enabled: false } });
  const ids: string[] = [];
  for (const v of ['1', '2', '3']) {
    const answer = await postJob(first.base, { Project: 'disk', Params: { v } });
    ids.push(String(answer.json?.URL).split('/')[2]);
  }
  t.equal(await first.cli.stop('SIGTERM'), 0);
  const { base } = await startServer(t, box, { gc: settings });
  const linked = ids[2];
  await eventually(async () => {
    const left = await readdir(join(box.build, 'disk', 'ready'));
    return left.length === 1 ? left : undefined;
  });
  t.same(
    await readdir(join(box.build, 'disk', 'ready')),
    [linked],
    'only the latest target survives',
  );
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(
    metrics,
    /^mistry_gc_removed_builds_total\{[^}]*project="disk"[^}]*reason="disk"[^}]*\} 2$/m,
  );
  t.match(metrics, /^mistry_build_path_used_ratio\{[^}]*\} 0\.\d+/m);
});
