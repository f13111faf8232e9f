// mistry-server end to end against the real Docker engine: builds, layout, cache, failures,
// validation and the original client's wire format (spec §2, §5, §7.2 basics/failures/cache).
import { lstat, readFile, readlink, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  countStarts,
  postJob,
  project,
  readJson,
  sandbox,
  startServer,
  uuid,
} from '../helpers/mistry.js';

const BUILD_INFO_KEYS = [
  'Params',
  'Group',
  'Path',
  'Cached',
  'Coalesced',
  'Incremental',
  'ExitCode',
  'ErrBuild',
  'ContainerStdouterr',
  'ContainerStderr',
  'TransportMethod',
  'StartedAt',
  'Duration',
  'URL',
];

/** Checks the original's types and field order; log fields may be absent. */
function checkSchema(t: Test, info: Record<string, unknown>): void {
  const keys = Object.keys(info);
  t.same(
    keys,
    BUILD_INFO_KEYS.filter((key) => keys.includes(key)),
    'field order',
  );
  for (const key of BUILD_INFO_KEYS) {
    if (key === 'ContainerStdouterr' || key === 'ContainerStderr') continue;
    t.ok(key in info, `has ${key}`);
  }
  t.ok(info.Params === null || typeof info.Params === 'object');
  t.ok(Number.isInteger(info.ExitCode), 'integer ExitCode');
  t.ok(Number.isInteger(info.Duration), 'integer Duration');
  t.equal(info.TransportMethod, 'rsync');
  t.match(info.StartedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/);
  t.match(info.URL, /^job\/[^/]+\/[0-9a-f]{64}$/);
  if ('ContainerStdouterr' in info) t.not(info.ContainerStdouterr, '', 'omitted when empty');
}

// TODO: spec §7.2 also runs basics, params, unknown project, exit code, async and rsync through
// an original mistry client binary when MISTRY_ORIGINAL_CLIENT names one; none is available on
// this machine, so only the wire replay below covers the original client.
t.test('builds, caches and lays out results like the original', async (t) => {
  const box = await sandbox(t);
  const marker = await uuid();
  await project(box, 'simple', {
    script: `echo "${marker}"\necho this is stderr >&2\ncat params/foo > artifacts/out.txt\ncp params/_x artifacts/x.txt 2>/dev/null || true`,
  });
  await project(box, 'exit-code', { script: 'exit 77' });
  await project(box, 'image-build-failure', {
    script: 'exit 0',
    dockerfile: ['RUN apt-get install -y fofkoeakodksao'],
  });
  await project(box, 'failed-build-cleanup', { script: 'exit 0', dockerfile: ['INVALIDCOMMAND'] });
  const server = await startServer(t, box);
  const { base } = server;

  const first = await postJob(base, {
    Project: 'simple',
    Params: { foo: 'zxc' },
    Group: '',
    Rebuild: false,
  });
  t.equal(first.status, 201, first.text);
  const info = first.json as Record<string, unknown>;
  checkSchema(t, info);
  t.equal(info.ExitCode, 0);
  t.equal(info.Cached, false);
  t.equal(info.Coalesced, false);
  t.equal(info.ContainerStderr, 'this is stderr\n');
  const id = String(info.URL).split('/')[2];
  const ready = join(box.build, 'simple', 'ready', id);
  t.equal(info.Path, join(ready, 'data', 'artifacts'));
  t.equal(await readFile(join(ready, 'data', 'artifacts', 'out.txt'), 'utf8'), 'zxc');
  t.equal(await readFile(join(ready, 'data', 'params', 'foo'), 'utf8'), 'zxc', 'no newline added');
  const log = await readFile(join(ready, 'out.log'), 'utf8');
  t.equal(info.ContainerStdouterr, log, 'ContainerStdouterr is out.log');
  t.match(log, marker);
  for (const line of log.split('\n').filter(Boolean)) {
    t.throws(() => JSON.parse(line) as unknown, 'out.log holds text, not JSON');
  }
  const stored = await readJson(join(ready, 'build_info.json'));
  t.notOk('ContainerStdouterr' in stored, 'logs never stored');
  t.equal(stored.ExitCode, 0);
  t.equal(await readlink(join(box.build, 'simple', 'latest')), ready, 'absolute latest link');
  t.equal((await stat(ready)).mode & 0o777, 0o755);
  t.equal((await stat(join(ready, 'build_info.json'))).mode & 0o777, 0o644);

  t.test('cache hit: same record, Cached, no container', async (t) => {
    let hit: Awaited<ReturnType<typeof postJob>> | undefined;
    const starts = await countStarts(box.build, async () => {
      hit = await postJob(base, { project: 'simple', params: { foo: 'zxc' } });
    });
    t.equal(starts, 0, 'no container started');
    t.equal(hit?.status, 201);
    const cached = hit?.json as Record<string, unknown>;
    checkSchema(t, cached);
    t.equal(cached.Cached, true);
    t.equal(cached.StartedAt, info.StartedAt, 'original StartedAt');
    t.equal(cached.Duration, info.Duration);
    t.equal(cached.ContainerStdouterr, log);
    t.notOk('ContainerStderr' in cached);
  });

  t.test('an _ param reaches the container but not the ID', async (t) => {
    const answer = await postJob(base, { Project: 'simple', Params: { foo: 'zxc', _x: '1' } });
    t.equal(answer.status, 201);
    t.equal(answer.json?.URL, info.URL, 'same ID');
    t.equal(answer.json?.Cached, true);
    const other = await postJob(base, { Project: 'simple', Params: { foo: 'other', _x: '1' } });
    t.not(other.json?.URL, info.URL, 'a plain param changes the ID');
    const otherReady = join(box.build, 'simple', 'ready', String(other.json?.URL).split('/')[2]);
    t.equal(await readFile(join(otherReady, 'data', 'params', '_x'), 'utf8'), '1');
    t.equal(await readFile(join(otherReady, 'data', 'artifacts', 'x.txt'), 'utf8'), '1');
  });

  t.test('a ready dir deleted by hand is rebuilt', async (t) => {
    await rm(ready, { recursive: true });
    const again = await postJob(base, { Project: 'simple', Params: { foo: 'zxc' } });
    t.equal(again.status, 201);
    t.equal(again.json?.Cached, false);
    t.not(again.json?.StartedAt, info.StartedAt);
  });

  t.test('a non-zero exit is a 201, never cached', async (t) => {
    const one = await postJob(base, { Project: 'exit-code' });
    t.equal(one.status, 201, one.text);
    t.equal(one.json?.ExitCode, 77);
    t.equal(one.json?.Params, null);
    const two = await postJob(base, { Project: 'exit-code' });
    t.equal(two.json?.ExitCode, 77);
    t.equal(two.json?.Cached, false, 'rebuilt');
    t.not(two.json?.StartedAt, one.json?.StartedAt);
    const links = await readdir(join(box.build, 'exit-code'));
    t.notOk(links.includes('latest'), 'failure not linked');
  });

  t.test('an image build failure is a 500 with the step in out.log', async (t) => {
    const answer = await postJob(base, { Project: 'image-build-failure' });
    t.equal(answer.status, 500);
    t.match(
      answer.text,
      /^Error building \{project=image-build-failure group= id=[0-9a-f]{7}\}: could not build docker image 'mistry-image-build-failure'/,
    );
    t.equal(answer.headers.get('content-type'), 'text/plain; charset=utf-8');
    const ids = await readdir(join(box.build, 'image-build-failure', 'ready'));
    t.equal(ids.length, 1);
    const dir = join(box.build, 'image-build-failure', 'ready', ids[0]);
    t.match(await readFile(join(dir, 'out.log'), 'utf8'), /RUN apt-get install -y fofkoeakodksao/);
    const stored = await readJson(join(dir, 'build_info.json'));
    t.equal(stored.ExitCode, -999);
    t.match(stored.ErrBuild, /could not build docker image/);
  });

  t.test('a Dockerfile parse error fails every time, never "exists"', async (t) => {
    for (let i = 0; i < 3; i++) {
      const answer = await postJob(base, { Project: 'failed-build-cleanup' });
      t.equal(answer.status, 500);
      t.match(answer.text, /unknown instruction: INVALIDCOMMAND/i);
      t.notMatch(answer.text, /exists/);
    }
  });

  t.test('bad input', async (t) => {
    const cases: [string, unknown, number, RegExp | string][] = [
      [
        'unknown project',
        { Project: 'Idontexist' },
        500,
        "Error creating new job: Unknown project 'Idontexist'\n",
      ],
      ['empty project', { Project: '' }, 400, 'no project given\n'],
      ['traversal', { Project: '../x' }, 400, "Invalid project name '../x'\n"],
      ['slash', { Project: 'a/b' }, 400, "Invalid project name 'a/b'\n"],
      ['bad group', { Project: 'simple', Group: '../g' }, 400, "Invalid group '../g'\n"],
      [
        'bad param key',
        { Project: 'simple', Params: { 'a/b': '1' } },
        400,
        "Invalid param key 'a/b'\n",
      ],
      [
        'number param',
        { Project: 'simple', Params: { a: 1 } },
        400,
        /^Error unmarshalling body '.*' to Job: /,
      ],
      [
        'bool project',
        { Project: true },
        400,
        /^Error unmarshalling body '\{"Project":true\}' to Job: /,
      ],
      ['not JSON', '{nope', 400, /^Error unmarshalling body '\{nope' to Job: /],
    ];
    for (const [name, body, status, text] of cases) {
      const answer = await postJob(base, body);
      t.equal(answer.status, status, name);
      if (typeof text === 'string') t.equal(answer.text, text, name);
      else t.match(answer.text, text, name);
    }
    const escaped = await readdir(box.root);
    t.same(
      escaped.sort(),
      ['config.json', 'data', 'projects'],
      'nothing created outside build_path',
    );
    t.notOk((await readdir(box.build)).includes('x'));
  });

  t.test('methods, index, job pages and async', async (t) => {
    const wrong = await fetch(`${base}/jobs`);
    t.equal(wrong.status, 405);
    t.equal(await wrong.text(), 'Expected POST, got GET\n');
    const wrongIndex = await fetch(`${base}/index/`, { method: 'POST' });
    t.equal(wrongIndex.status, 405);
    t.equal(await wrongIndex.text(), 'Expected GET, got POST\n');

    const asyncAnswer = await postJob(
      base,
      { Project: 'simple', Params: { foo: 'async' } },
      '?async=0',
    );
    t.equal(asyncAnswer.status, 201);
    t.equal(asyncAnswer.text, '', 'empty body');
    for (const path of ['/index', '/index/']) {
      const response = await fetch(`${base}${path}`, { redirect: 'manual' });
      t.equal(response.status, 200, path);
      const items = (await response.json()) as Record<string, unknown>[];
      t.ok(items.length >= 3);
      const item = items[0];
      t.same(Object.keys(item), ['id', 'project', 'startedAt', 'buildInfo', 'state']);
      t.match(
        item.startedAt,
        /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d$/,
      );
      const times = items.map((entry) =>
        Date.parse((entry.buildInfo as { StartedAt: string }).StartedAt),
      );
      t.same(
        times,
        [...times].sort((a, b) => b - a),
        'newest first',
      );
      t.notOk('ContainerStdouterr' in (item.buildInfo as object));
    }
    const job = await fetch(`${base}/job/simple/${id}`, {
      headers: { Accept: 'application/json' },
    });
    t.equal(job.status, 200);
    const detail = (await job.json()) as Record<string, unknown>;
    t.same(Object.keys(detail), [
      'ID',
      'Project',
      'Params',
      'Group',
      'StartedAt',
      'BuildInfo',
      'State',
    ]);
    t.equal(detail.ID, id);
    t.equal(detail.State, 'ready');
    t.match((detail.BuildInfo as Record<string, unknown>).ContainerStdouterr, marker);
    t.equal((await fetch(`${base}/job/simple/${'0'.repeat(64)}`)).status, 404);
    t.equal((await fetch(`${base}/job/simple`)).status, 400);
    t.equal((await fetch(`${base}/log/simple/${id}`)).status, 204, 'log of a ready job');
    t.equal((await fetch(`${base}/log/simple/${'0'.repeat(64)}`)).status, 404);
    const page = await fetch(`${base}/job/simple/${id}`);
    t.match(await page.text(), /<title>Job Logs<\/title>/);
    const home = await fetch(`${base}/`);
    t.match(await home.text(), /<title>The mistry jobs<\/title>/);
    t.equal((await fetch(`${base}/static/nope.js`)).status, 404);
  });

  t.test('metrics carry the original series', async (t) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'mistry_builds_started',
      'mistry_builds_finished',
      'mistry_cache_utilization',
      'mistry_builds_hosted',
      'mistry_builds_succeeded_seconds_bucket',
    ]) {
      t.match(text, new RegExp(`^${name}\\{[^}]*project="simple"`, 'm'), name);
    }
    t.match(text, /^mistry_builds_failed_seconds_bucket\{[^}]*project="exit-code"/m);
    t.match(
      text,
      /^mistry_cache_utilization\{[^}]*project="simple"[^}]*\} [2-9]/m,
      'two hits or more',
    );
    t.match(text, /^mistry_build_errors_total\{[^}]*stage="image"/m);
    t.match(text, /^mistry_http_requests_total\{[^}]*route="jobs"/m);
    const health = await fetch(`${base}/healthz`);
    t.same(await health.json(), { status: 'ok', docker: 'up', rsync: 'off' });
  });

  t.test('SIGTERM with nothing running exits 0 and leaves no lock', async (t) => {
    t.equal(await server.cli.stop('SIGTERM', 20_000), 0);
    await t.rejects(lstat(join(box.build, '.mistry-server.lock')));
  });
});
