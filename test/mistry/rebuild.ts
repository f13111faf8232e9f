// `mistry-server rebuild --json` (spec §3.12) against the real engine: the one-line report on
// stdout for a clean run and for failing projects, with the exit codes of the human form.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runCli } from '../helpers/cli.js';
import { project, sandbox, type Sandbox } from '../helpers/mistry.js';
import { LABEL } from '../../src/mistry/server/docker-runner.js';
import { dockerClient, TEST_IMAGE } from '../helpers/services.js';

// Image names are global to the engine: a per-run suffix keeps parallel suites apart.
const RUN = `${process.pid}${Date.now().toString(36)}`;
/**
 * The prune is engine-wide; a day's bound keeps it off what parallel suites build right now (an
 * old image of theirs may be the build cache of a running build).
 */
const KEEP = ['--prune-min-age', '86400'];

async function configFor(box: Sandbox): Promise<string> {
  const path = join(box.root, 'config.json');
  await writeFile(path, JSON.stringify({ projects_path: box.projects, build_path: box.build }));
  return path;
}

/** Removes `mistry-<name>` in teardown, whatever the test left. */
function dropImages(t: Test, ...names: string[]): void {
  t.teardown(async () => {
    for (const name of names) {
      await dockerClient()
        .getImage(`mistry-${name}`)
        .remove({ force: true })
        .catch(() => undefined);
    }
  });
}

/** Parses stdout, which must be exactly one JSON line. */
function report(t: Test, stdout: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((line) => line !== '');
  t.equal(lines.length, 1, `one stdout line: ${stdout}`);
  return JSON.parse(lines[0] ?? 'null') as Record<string, unknown>;
}

t.test('--help documents --json and the report fields', async (t) => {
  const help = await runCli(t, ['mistry-server', 'rebuild', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--json\s/);
  t.match(help.stdout, /"projects":\[\{"name","ok","error"\?,"durationMs"\}\]/);
  t.match(help.stdout, /--config/);
});

t.test('--json on success: one report line, exit 0, no Finished line', async (t) => {
  const box = await sandbox(t);
  const name = `rjok${RUN}`;
  dropImages(t, name);
  await project(box, name, { script: 'echo ok > artifacts/out.txt' });
  const started = Date.now();
  const run = await runCli(
    t,
    ['mistry-server', 'rebuild', '--config', await configFor(box), ...KEEP, '-p', name, '--json'],
    { timeoutMs: 120_000 },
  );
  t.equal(run.code, 0, run.stderr);
  t.notMatch(run.stdout, /Finished\./);
  t.match(run.stderr, new RegExp(`Rebuilding ${name}\\.\\.\\.`), 'progress stays on stderr');
  const json = report(t, run.stdout);
  t.match(json, {
    ok: true,
    rebuilt: 1,
    failed: [],
    skipped: [],
    notAttempted: [],
    pruned: { ok: true, containers: Number, images: Number, reclaimedBytes: Number },
  });
  const projects = json.projects as Record<string, unknown>[];
  t.equal(projects.length, 1);
  t.same(Object.keys(projects[0] ?? {}).sort(), ['durationMs', 'name', 'ok']);
  t.match(projects[0], { name, ok: true, durationMs: Number });
  const duration = Number(projects[0]?.durationMs);
  t.ok(duration > 0 && duration <= Date.now() - started, `duration ${duration} ms is plausible`);
  t.notOk('error' in (json.pruned as object), 'no prune error');
  const image = await dockerClient().getImage(`mistry-${name}`).inspect();
  t.ok(Date.parse(image.Created) >= started - 2000, 'the image was built by this run');
  t.equal(image.Config.Labels?.['skroutz-infra.mistry'], '1');
});

t.test('--json with failures: names and causes per project, exit 1', async (t) => {
  const box = await sandbox(t);
  // Sorted order decides the run order: the broken project goes first.
  const broken = `rja${RUN}`;
  const good = `rjb${RUN}`;
  dropImages(t, broken, good);
  await project(box, broken, {
    script: 'true',
    dockerfile: ['RUN echo boom && exit 3'],
  });
  await project(box, good, { script: 'echo ok > artifacts/out.txt' });
  await mkdir(join(box.projects, 'notes'));
  const config = await configFor(box);

  const all = await runCli(t, ['mistry-server', 'rebuild', '--config', config, ...KEEP, '--json'], {
    timeoutMs: 180_000,
  });
  t.equal(all.code, 1, all.stderr);
  t.match(all.stderr, new RegExp(`^Error: .*Failed: 1, Failed names: ${broken}$`, 'm'));
  const json = report(t, all.stdout);
  t.match(json, {
    ok: false,
    rebuilt: 1,
    failed: [broken],
    skipped: ['notes'],
    notAttempted: [],
    pruned: { ok: true },
  });
  const projects = json.projects as Record<string, unknown>[];
  t.same(
    projects.map((p) => [p.name, p.ok]),
    [
      [broken, false],
      [good, true],
    ],
  );
  const error = String(projects[0]?.error);
  t.match(error, `mistry-${broken}`, 'the message names the project');
  t.match(error, /returned a non-zero code: 3/, 'the message gives the cause');
  t.type(projects[0]?.durationMs, 'number');
  t.notOk('error' in (projects[1] ?? {}), 'no error on the rebuilt project');

  const fast = await runCli(
    t,
    ['mistry-server', 'rebuild', '--config', config, ...KEEP, '--json', '--fail-fast'],
    { timeoutMs: 120_000 },
  );
  t.equal(fast.code, 1, fast.stderr);
  t.match(report(t, fast.stdout), {
    ok: false,
    rebuilt: 0,
    failed: [broken],
    notAttempted: [good],
    projects: [{ name: broken, ok: false, error: /returned a non-zero code: 3/ }],
  });

  const missing = await runCli(t, [
    'mistry-server',
    'rebuild',
    '--config',
    config,
    ...KEEP,
    '--json',
    '-p',
    'nosuchproject',
  ]);
  t.equal(missing.code, 1, missing.stderr);
  t.match(report(t, missing.stdout), {
    ok: false,
    failed: ['nosuchproject'],
    projects: [
      {
        name: 'nosuchproject',
        ok: false,
        error: `${join(box.projects, 'nosuchproject')}/Dockerfile doesn't exist`,
      },
    ],
  });
});

/** A labelled container that ran busybox `true` and exited; removed in teardown if still there. */
async function exitedLeftover(t: Test): Promise<string> {
  const docker = dockerClient();
  const container = await docker.createContainer({
    Image: TEST_IMAGE,
    Cmd: ['true'],
    Labels: { [LABEL]: '1', 'skroutz-infra.test': RUN },
    HostConfig: { NetworkMode: 'none' },
  });
  t.teardown(() => container.remove({ force: true }).catch(() => undefined));
  await container.start();
  await container.wait();
  return container.id;
}

async function exists(id: string): Promise<boolean> {
  return dockerClient()
    .getContainer(id)
    .inspect()
    .then(
      () => true,
      () => false,
    );
}

// A running server's build container exits and is collected moments later; a prune that ran in
// between would take its result away, so leftovers younger than --prune-min-age stay.
// TODO: the removal of leftovers older than the bound has no end-to-end test: the engine is shared
// by suites running in parallel, and a prune of their old images (build-cache parents of their
// running builds) breaks those builds, so no test here may prune for real.
t.test('the prune keeps leftovers younger than --prune-min-age', async (t) => {
  const box = await sandbox(t);
  const id = await exitedLeftover(t);

  const run = await runCli(
    t,
    ['mistry-server', 'rebuild', '--config', await configFor(box), ...KEEP, '--json'],
    {
      timeoutMs: 60_000,
    },
  );
  t.equal(run.code, 0, run.stderr);
  t.ok(await exists(id), 'a container that exited just now is kept');
  const json = report(t, run.stdout) as { pruned: { containers: number } };
  t.equal(json.pruned.containers, 0, 'nothing pruned');
});

t.test('--prune-min-age names a bad value', async (t) => {
  const run = await runCli(t, ['mistry-server', 'rebuild', '--prune-min-age', '10m']);
  t.equal(run.code, 2);
  t.match(run.stderr, /"10m" is not a whole number of seconds/);
});
