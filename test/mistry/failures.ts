// Failure rows of spec §5 that need a particular setup: body limit, the Docker engine being down,
// project files changing while a job is queued.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { eventually, postJob, project, sandbox, startServer } from '../helpers/mistry.js';

t.test('a body over max_body_bytes is a 413', async (t) => {
  const box = await sandbox(t);
  const { base } = await startServer(t, box, { max_body_bytes: 64 });
  const answer = await postJob(base, { Project: 'x'.repeat(100) });
  t.equal(answer.status, 413);
  t.equal(answer.text, 'Request body too large\n');
});

t.test('with the engine unreachable builds fail with 500, cache hits still work', async (t) => {
  const box = await sandbox(t);
  await project(box, 'simple', { script: 'echo ok > artifacts/out.txt' });
  const healthy = await startServer(t, box);
  t.equal((await postJob(healthy.base, { Project: 'simple' })).status, 201);
  t.equal(await healthy.cli.stop('SIGTERM'), 0);

  const down = await startServer(t, box, {}, [], {
    DOCKER_HOST: `unix://${join(box.root, 'no.sock')}`,
  });
  const hit = await postJob(down.base, { Project: 'simple' });
  t.equal(hit.status, 201);
  t.equal(hit.json?.Cached, true);
  const miss = await postJob(down.base, { Project: 'simple', Params: { a: '1' } });
  t.equal(miss.status, 500);
  t.match(
    miss.text,
    /^Error building \{project=simple group= id=[0-9a-f]{7}\}: could not build docker image 'mistry-simple': /,
  );
  const health = await eventually(async () => {
    const body = (await (await fetch(`${down.base}/healthz`)).json()) as { docker: string };
    return body.docker === 'down' ? body : undefined;
  });
  t.same(health, { status: 'ok', docker: 'down', rsync: 'off' });
  t.equal(
    (await postJob(down.base, { Project: 'simple', Params: { a: '1' } })).status,
    500,
    'next request tries again',
  );
});

t.test('a project changed while its job was queued fails that job', async (t) => {
  const box = await sandbox(t);
  await project(box, 'sleep', { script: 'sleep 2' });
  const dir = await project(box, 'victim', { script: 'exit 0' });
  const { base } = await startServer(t, box, { job_concurrency: 1 });
  const blocker = postJob(base, { Project: 'sleep' });
  await eventually(async () => {
    const items = (await (await fetch(`${base}/index`)).json()) as { state: string }[];
    return items.some((i) => i.state === 'pending') ? true : undefined;
  });
  const victim = postJob(base, { Project: 'victim' });
  await sleep(300);
  await writeFile(join(dir, 'new-file'), 'changed');
  const answer = await victim;
  t.equal(answer.status, 500);
  t.match(answer.text, /project 'victim' changed while the job was queued; retry/);
  t.equal((await blocker).status, 201);
  const retry = await postJob(base, { Project: 'victim' });
  t.equal(retry.status, 201, 'the retry builds the new content');
});
