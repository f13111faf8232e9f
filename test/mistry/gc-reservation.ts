// GC's reservation on a ready build (spec §3.7), on a real BuildManager over temp dirs: no Docker
// build runs (a miss is refused by a zero backlog), so each step of the race can be held still.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/common/logger.js';
import type { BuildInfo } from '../../src/mistry/build-info.js';
import { computeJobId } from '../../src/mistry/job-id.js';
import { BuildManager, type JobRequest } from '../../src/mistry/server/builds.js';
import { loadConfig } from '../../src/mistry/server/config.js';
import { FingerprintCache } from '../../src/mistry/server/fingerprint.js';
import { createFilesystem } from '../../src/mistry/server/filesystem.js';
import { JobIndex } from '../../src/mistry/server/job-index.js';
import { createMetrics } from '../../src/mistry/server/metrics.js';

const REQUEST: JobRequest = { project: 'p', group: '', params: { v: '1' }, rebuild: false };

async function setUp(t: Test) {
  const root = await mkdtemp(join(tmpdir(), 'mst-gc-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const projects = join(root, 'projects');
  const build = join(root, 'data');
  await mkdir(join(projects, 'p'), { recursive: true });
  await mkdir(build);
  await writeFile(join(projects, 'p', 'Dockerfile'), 'FROM scratch\n');
  await writeFile(
    join(root, 'config.json'),
    JSON.stringify({ projects_path: projects, build_path: build }),
  );
  const loaded = await loadConfig('config.json', {}, root, () => undefined);
  // No room in the queue: a miss answers backlog_full instead of starting a build.
  const config = { ...loaded, jobBacklog: 0 };
  const index = new JobIndex();
  const builds = new BuildManager({
    config,
    docker: new Docker(),
    filesystem: await createFilesystem('plain', build),
    logger: silentLogger(),
    metrics: createMetrics(new Registry()),
    index,
  });
  const files = await new FingerprintCache().scan(join(projects, 'p'));
  const id = computeJobId({ ...REQUEST, files });
  const dir = builds.layout.ready('p', id);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'out.log'), 'built\n');
  const buildInfo = { ExitCode: 0, ErrBuild: '' } as BuildInfo;
  index.set({ id, project: 'p', buildInfo, state: 'ready' });
  return { builds, index, id, dir };
}

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

t.test('a request for a build being removed waits, then misses', async (t) => {
  const { builds, index, id, dir } = await setUp(t);
  const release = builds.reserveForRemoval(id, dir, 0);
  if (!release) throw new Error('the reservation was refused');
  let settled = false;
  const admission = builds.admit(REQUEST).finally(() => (settled = true));
  await tick();
  t.notOk(settled, 'the request waits for the removal');
  t.ok(builds.beingRemoved(id), 'a download asking now is told the build is gone');
  await rm(dir, { recursive: true });
  index.delete(id);
  release();
  t.match(await admission, { kind: 'rejected', reason: 'backlog_full' }, 'then it is a miss');
  t.notOk(builds.beingRemoved(id));
});

t.test('a cache answer, a reader or a recent answer refuses the reservation', async (t) => {
  const { builds, id, dir } = await setUp(t);
  t.match(await builds.admit(REQUEST), { kind: 'cached', id }, 'a hit before any removal');
  t.equal(builds.reserveForRemoval(id, dir, 60_000), undefined, 'answered within min_idle_s');
  const stopReading = builds.addReader(id);
  t.equal(builds.reserveForRemoval(id, dir, 0), undefined, 'a download is open');
  stopReading();
  stopReading(); // a second call must not release another reader
  const second = builds.addReader(id);
  t.equal(builds.reserveForRemoval(id, dir, 0), undefined, 'still one reader');
  second();
  const release = builds.reserveForRemoval(id, dir, 0);
  t.type(release, 'function', 'nothing holds the build any more');
  t.equal(builds.reserveForRemoval(id, dir, 0), undefined, 'one removal at a time');
  release?.();
});
