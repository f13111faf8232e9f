// Timeouts, graceful shutdown and crash recovery against the real engine (spec §3.4, §3.9, §7.2
// timeout, shutdown, recovery, rebuild).
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import {
  eventually,
  postJob,
  project,
  readJson,
  sandbox,
  startServer,
  type Sandbox,
} from '../helpers/mistry.js';
import { TEST_IMAGE, dockerClient } from '../helpers/services.js';

/** A build that sleeps, ending promptly on SIGTERM (sh as PID 1 ignores it otherwise). */
const SLEEPER =
  "trap 'exit 143' TERM\nsleep $(cat params/s) &\nwait\necho slept > artifacts/out.txt";

async function containersOf(box: Sandbox): Promise<string[]> {
  const list = await dockerClient().listContainers({
    all: true,
    filters: { label: [`skroutz-infra.mistry.build-path=${box.build}`] },
  });
  return list.map((c) => c.Names[0] ?? c.Id);
}

t.test('a project timeout stops the container and answers 201', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: SLEEPER });
  // Warm the image cache on a server without the tight budget, so that the 2 s are spent in the
  // container and not in the image build, however loaded the machine is.
  const warm = await startServer(t, box);
  t.equal((await postJob(warm.base, { Project: 'sleep', Params: { s: '0' } })).json?.ExitCode, 0);
  t.equal(await warm.cli.stop('SIGTERM'), 0);
  const { base } = await startServer(t, box, {
    project_settings: { sleep: { build_timeout_s: 2 } },
  });
  const started = Date.now();
  const [owner, waiter] = await Promise.all([
    postJob(base, { Project: 'sleep', Params: { s: '10' } }),
    sleep(500).then(() => postJob(base, { Project: 'sleep', Params: { s: '10' } })),
  ]);
  t.ok(Date.now() - started < 9000, 'well before the sleep ends');
  t.equal(owner.status, 201);
  t.not(owner.json?.ExitCode, 0);
  t.equal(owner.json?.ErrBuild, 'build timed out after 2s');
  t.equal(waiter.json?.Coalesced, true, 'waiter answered too');
  t.equal(waiter.json?.ExitCode, owner.json?.ExitCode);
  t.same(await containersOf(box), [], 'no container left');
  const id = String(owner.json?.URL).split('/')[2];
  t.not(
    await readlink(join(box.build, 'sleep', 'latest')),
    join(box.build, 'sleep', 'ready', id),
    'latest still at the warm-up build, not at the timed-out one',
  );
  t.match(
    await readFile(join(box.build, 'sleep', 'ready', id, 'out.log'), 'utf8'),
    '[mistry] build timed out after 2s; container stopped',
  );
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /^mistry_build_timeouts_total\{[^}]*project="sleep"[^}]*\} 1$/m);
});

t.test('SIGTERM drains running builds within the grace', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: SLEEPER });
  const server = await startServer(t, box, { shutdown_grace_s: 20 });
  const running = postJob(server.base, { Project: 'sleep', Params: { s: '2' } });
  await eventually(async () => ((await containersOf(box)).length > 0 ? true : undefined));
  const keepAlive = await fetch(`${server.base}/healthz`);
  t.equal(keepAlive.status, 200);
  server.cli.child.kill('SIGTERM');
  await server.cli.waitForLine(/shutting down \(signal SIGTERM\)/);
  const answer = await running;
  t.equal(answer.status, 201);
  t.equal(answer.json?.ExitCode, 0);
  t.equal(await server.cli.exited(20_000), 0);
  const id = String(answer.json?.URL).split('/')[2];
  t.equal(
    await readFile(join(box.build, 'sleep', 'ready', id, 'data', 'artifacts', 'out.txt'), 'utf8'),
    'slept\n',
  );
  t.match(server.cli.output(), /"msg":"stopped"/);
});

t.test('past the grace, builds are interrupted and answered 500', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: SLEEPER });
  const server = await startServer(t, box, { shutdown_grace_s: 1 });
  const running = postJob(server.base, { Project: 'sleep', Params: { s: '30' } });
  await eventually(async () => ((await containersOf(box)).length > 0 ? true : undefined));
  server.cli.child.kill('SIGTERM');
  const answer = await running;
  t.equal(answer.status, 500);
  t.match(
    answer.text,
    /^Error building \{project=sleep group= id=[0-9a-f]{7}\}: interrupted: server shutting down\n$/,
  );
  t.equal(await server.cli.exited(30_000), 0);
  t.same(await containersOf(box), [], 'no container left');
  const ids = await readdir(join(box.build, 'sleep', 'ready'));
  t.equal(ids.length, 1);
  const stored = await readJson(join(box.build, 'sleep', 'ready', ids[0], 'build_info.json'));
  t.equal(stored.ErrBuild, 'interrupted: server shutting down');
});

t.test('after SIGKILL a restart cleans up and the same request rebuilds', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: SLEEPER });
  const first = await startServer(t, box);
  const lost = postJob(first.base, { Project: 'sleep', Params: { s: '30' } }, '?async');
  t.equal((await lost).status, 201);
  await eventually(async () => ((await containersOf(box)).length > 0 ? true : undefined));
  t.equal(await first.cli.stop('SIGKILL'), 'SIGKILL');
  t.equal((await containersOf(box)).length, 1, 'orphan still running');
  await mkdir(join(box.build, 'sleep', 'pending', 'foo'));

  const second = await startServer(t, box);
  t.match(second.cli.output(), /\[cleanup\] Removed orphan container mistry-[0-9a-f]{64}/);
  t.match(second.cli.output(), /\[cleanup\] Pruned zombie build 'foo' of project 'sleep'/);
  t.same(await containersOf(box), []);
  t.same(await readdir(join(box.build, 'sleep', 'pending')), [], 'pending/ empty');
  const ids = await readdir(join(box.build, 'sleep', 'ready'));
  t.equal(ids.length, 1);
  const stored = await readJson(join(box.build, 'sleep', 'ready', ids[0], 'build_info.json'));
  t.equal(stored.ErrBuild, 'interrupted: server stopped before the build finished');
  t.equal(stored.ExitCode, -999);
  await writeFile(join(box.projects, 'sleep', 'unused'), '');
  await rm(join(box.projects, 'sleep', 'unused'));
  const again = await postJob(second.base, { Project: 'sleep', Params: { s: '0' } });
  t.equal(again.status, 201);
  const retry = await postJob(second.base, { Project: 'sleep', Params: { s: '30' } }, '?async');
  t.equal(retry.status, 201, 'the interrupted ID is accepted again');
  t.equal(await second.cli.stop('SIGTERM', 60_000), 0);
});

t.test('a second server on the same build_path is refused', async (t) => {
  const box = await sandbox(t);
  await startServer(t, box);
  const other = await runCli(t, [
    'mistry-server',
    '--config',
    join(box.root, 'config.json'),
    '--addr',
    '127.0.0.1:0',
  ]);
  t.equal(other.code, 1);
  t.match(other.stderr, /in use by another mistry-server/);
});

t.test('start errors are one line on stderr and exit 1', async (t) => {
  const box = await sandbox(t);
  let files = 0;
  const write = async (value: unknown): Promise<string> => {
    const path = join(box.root, `bad-${files++}.json`);
    await writeFile(path, typeof value === 'string' ? value : JSON.stringify(value));
    return path;
  };
  const cases: [string, string, string[], RegExp][] = [
    ['bad JSON', await write('{'), [], /cannot parse configuration; /],
    [
      'missing key',
      await write({ build_path: box.build }),
      [],
      /cannot parse configuration; .*projects_path: is required/,
    ],
    [
      'filesystem',
      await write({ build_path: box.build, projects_path: box.projects }),
      ['--filesystem', 'zfs'],
      /unknown filesystem 'zfs'/,
    ],
    [
      'empty addr',
      await write({ build_path: box.build, projects_path: box.projects, addr: '' }),
      [],
      /addr must be provided/,
    ],
    [
      'not btrfs',
      await write({ build_path: box.build, projects_path: box.projects }),
      ['--filesystem', 'btrfs'],
      /build_path .* is not on btrfs/,
    ],
    [
      'missing dir',
      await write({ build_path: join(box.root, 'nope'), projects_path: box.projects }),
      [],
      /build_path .*nope does not exist/,
    ],
  ];
  for (const [name, path, flags, message] of cases) {
    const addr = name === 'empty addr' ? [] : ['--addr', '127.0.0.1:0'];
    const run = await runCli(t, ['mistry-server', '--config', path, ...addr, ...flags]);
    t.equal(run.code, 1, name);
    t.match(run.stderr, message, name);
    t.equal(run.stderr.trim().split('\n').length, 1, `${name}: one line`);
  }
});

t.test('rebuild: a container holding the name is moved aside; the operator command', async (t) => {
  const box = await sandbox(t);
  await project(box, 'simple', { script: 'echo ok > artifacts/out.txt' });
  const server = await startServer(t, box);
  const first = await postJob(server.base, { Project: 'simple' });
  const id = String(first.json?.URL).split('/')[2];
  await rm(join(box.build, 'simple', 'ready', id), { recursive: true });
  const docker = dockerClient();
  const squatter = await docker.createContainer({
    name: `mistry-${id}`,
    Image: TEST_IMAGE,
    Cmd: ['true'],
    Labels: { 'skroutz-infra.mistry.build-path': box.build },
  });
  t.teardown(() => squatter.remove({ force: true }).catch(() => undefined));
  const image = await docker.getImage('mistry-simple').inspect();
  const rebuilt = await postJob(server.base, { Project: 'simple', Rebuild: true });
  t.equal(rebuilt.status, 201, rebuilt.text);
  t.equal(rebuilt.json?.ExitCode, 0);
  const renamed = (await squatter.inspect()).Name;
  t.match(renamed, new RegExp(`^/mistry-${id}-renamed-[0-9a-f]{32}$`));
  const after = await docker.getImage('mistry-simple').inspect();
  t.not(after.Created, image.Created, 'Rebuild made a new image');

  const bystander = await docker.createContainer({
    Image: TEST_IMAGE,
    Cmd: ['true'],
    Labels: { 'mst-test': box.root },
  });
  t.teardown(() => bystander.remove({ force: true }).catch(() => undefined));
  const ok = await runCli(
    t,
    // A day's bound keeps the engine-wide prune off what parallel suites are building.
    [
      'mistry-server',
      'rebuild',
      '--config',
      server.configPath,
      '--prune-min-age',
      '86400',
      '-p',
      'simple',
    ],
    { timeoutMs: 120_000 },
  );
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stderr, /Rebuilding simple\.\.\./);
  t.match(
    ok.stdout,
    /^Finished\. Rebuilt: 1, Pruned images: \d+, Pruned containers: \d+, Reclaimed: .+, Failed: 0$/m,
  );
  t.ok(await bystander.inspect(), 'unlabelled container survives the prune');
  const bad = await runCli(t, [
    'mistry-server',
    'rebuild',
    '--config',
    server.configPath,
    '--prune-min-age',
    '86400',
    '-p',
    'shouldnotexist',
  ]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /Failed names: shouldnotexist/);
});
