// The `mistry build` client against a real server (spec §3.11, §7.2 async/client, auth, SSE):
// exit codes, streamed logs, HTTP and rsync downloads, tokens.
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { runCli, spawnCli } from '../helpers/cli.js';
import { eventually, postJob, project, readJson, sandbox, startServer } from '../helpers/mistry.js';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

t.test('mistry build: downloads, exit codes and streaming', async (t) => {
  const box = await sandbox(t);
  await project(box, 'simple', {
    script:
      'echo building\nmkdir -p artifacts/sub\ncat params/foo > artifacts/out.txt\necho nested > artifacts/sub/n.txt\nln -s out.txt artifacts/link',
  });
  await project(box, 'bad-entrypoint', { script: 'echo this is stderr >&2\nmissing_command' });
  await project(box, 'sleep', {
    script: "trap 'exit 143' TERM\nsleep 3 &\nwait\necho done > artifacts/out.txt",
  });
  await project(box, 'chatty', {
    script: 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done\necho ok > artifacts/out.txt',
  });
  const rsyncPort = await freePort();
  const server = await startServer(t, box, {
    rsync: { enabled: true, address: '127.0.0.1', port: rsyncPort },
  });
  await server.cli.waitForLine(/rsync daemon started/);
  const client = (args: string[], timeoutMs = 60_000) =>
    runCli(t, ['mistry', 'build', '--server', server.base, ...args], { cwd: box.root, timeoutMs });

  const target = join(box.root, 'out-http');
  const ok = await client(['--project', 'simple', '--target', target, 'foo=a=b']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(await readFile(join(target, 'out.txt'), 'utf8'), 'a=b', 'value split at the first =');
  t.equal(await readFile(join(target, 'sub', 'n.txt'), 'utf8'), 'nested\n');
  t.match(ok.stderr, /building/);
  t.match(ok.stderr, new RegExp(`Logs can be found at ${server.base}/job/simple/[0-9a-f]{64}`));
  t.match(ok.stderr, `Artifacts copied to ${target}`);
  t.equal(ok.stdout, '', 'stdout stays clean');

  t.test('rsync fetches the same files, --clear-target empties first', async (t) => {
    const viaRsync = join(box.root, 'out-rsync');
    await mkdir(viaRsync);
    await writeFile(join(viaRsync, 'stale'), 'old');
    const run = await client([
      '--project',
      'simple',
      '--target',
      viaRsync,
      '--transport',
      'rsync',
      '--rsync-port',
      String(rsyncPort),
      '--clear-target',
      'foo=a=b',
    ]);
    t.equal(run.code, 0, run.stderr);
    t.same((await readdir(viaRsync)).sort(), (await readdir(target)).sort());
    t.equal(await readFile(join(viaRsync, 'out.txt'), 'utf8'), 'a=b');
    await writeFile(join(target, 'stale'), 'old');
    const http = await client([
      '--project',
      'simple',
      '--target',
      target,
      '--clear-target',
      'foo=a=b',
    ]);
    t.equal(http.code, 0);
    t.notOk((await readdir(target)).includes('stale'));
  });

  t.test('the original rsync command line works against the daemon', async (t) => {
    const answer = await postJob(server.base, { Project: 'simple', Params: { foo: 'a=b' } });
    const path = String(answer.json?.Path);
    const dest = join(box.root, 'orig');
    await mkdir(dest);
    await new Promise<void>((resolve, reject) =>
      execFile(
        'sh',
        [
          '-c',
          `rsync -rtlp --port ${rsyncPort} root@127.0.0.1::mistry/${path.slice(path.indexOf('simple/'))}/* ${dest}`,
        ],
        (err) => (err ? reject(new Error(err.message)) : resolve()),
      ),
    );
    t.equal(await readFile(join(dest, 'out.txt'), 'utf8'), 'a=b');
  });

  t.test('failures map to exit codes', async (t) => {
    const bad = await client(['--project', 'bad-entrypoint', '--target', join(box.root, 'x')]);
    t.equal(bad.code, 1);
    t.match(bad.stderr, /this is stderr/);
    t.match(bad.stderr, /missing_command/);
    t.match(bad.stderr, /not found/);
    t.match(bad.stderr, /Container error logs:/);
    t.match(bad.stderr, /Build failed with exit code 127/);
    const unknown = await client(['--project', 'Idontexist']);
    t.equal(unknown.code, 3);
    t.match(
      unknown.stderr,
      /\(error: 500\) Error scheduling build: Error creating new job: Unknown project 'Idontexist'/,
    );
    const transport = await client(['--project', 'simple', '--transport', 'scp']);
    t.equal(transport.code, 2);
    t.match(transport.stderr, /invalid transport argument \(scp\)/);
    await writeFile(join(box.root, 'afile'), '');
    const notDir = await client(['--project', 'simple', '--target', join(box.root, 'afile')]);
    t.equal(notDir.code, 2);
    t.match(
      notDir.stderr,
      `Target path (${join(box.root, 'afile')}) is not a directory. Aborting.`,
    );
    const noProject = await client([]);
    t.equal(noProject.code, 2);
    t.match(noProject.stderr, /project cannot be empty/);
    const lonely = await client(['--project', 'simple', 'lonely']);
    t.equal(lonely.code, 2);
    const down = await runCli(t, [
      'mistry',
      'build',
      '--server',
      'http://127.0.0.1:1',
      '--project',
      'simple',
    ]);
    t.equal(down.code, 3);
  });

  t.test('--timeout gives up with exit 4 while the server keeps building', async (t) => {
    const run = await client([
      '--project',
      'sleep',
      '--timeout',
      '1s',
      '--target',
      join(box.root, 'y'),
    ]);
    t.equal(run.code, 4);
    t.match(run.stderr, /The build did not finish after 1s/);
    const ready = await eventually(async () => {
      const ids = await readdir(join(box.build, 'sleep', 'ready'));
      return ids.length === 1 ? ids[0] : undefined;
    }, 15_000);
    t.equal(
      (await readJson(join(box.build, 'sleep', 'ready', ready, 'build_info.json'))).ExitCode,
      0,
    );
  });

  t.test('--async prints only the job URL', async (t) => {
    const run = await client(['--project', 'simple', '--async', 'foo=async']);
    t.equal(run.code, 0, run.stderr);
    const url = run.stdout.trim();
    t.match(url, new RegExp(`^${server.base}/job/simple/[0-9a-f]{64}$`));
    const id = url.split('/').pop() as string;
    const info = await eventually(
      () => readJson(join(box.build, 'simple', 'ready', id, 'build_info.json')),
      10_000,
    );
    t.equal(info.ExitCode, 0);
  });

  t.test('--json-result prints the BuildInfo on stdout', async (t) => {
    const run = await client([
      '--project',
      'simple',
      '--json-result',
      '--target',
      join(box.root, 'j'),
      'foo=a=b',
    ]);
    t.equal(run.code, 0);
    const info = JSON.parse(run.stdout) as Record<string, unknown>;
    t.equal(info.Cached, true);
    t.notOk('ContainerStdouterr' in info);
  });

  t.test('chatty: log lines arrive while the build runs', async (t) => {
    const cli = spawnCli(t, [
      'mistry',
      'build',
      '--server',
      server.base,
      '--project',
      'chatty',
      '--target',
      join(box.root, 'c'),
    ]);
    await cli.waitForLine(/^line 1$/, 30_000);
    const firstAt = Date.now();
    t.equal(await cli.exited(30_000), 0);
    t.ok(Date.now() - firstAt >= 2000, 'first line at least 2 s before the exit');
  });
});

t.test('SSE log: live lines, replay by offset, end event', async (t) => {
  const box = await sandbox(t);
  await project(box, 'chatty', {
    script: 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done',
  });
  const { base } = await startServer(t, box);
  const accepted = await postJob(base, { Project: 'chatty' }, '?async', {
    Accept: 'application/json',
  });
  t.equal(accepted.status, 201);
  const id = String(accepted.json?.id);
  t.equal(accepted.json?.url, `job/chatty/${id}`);
  await eventually(async () => {
    const response = await fetch(`${base}/log/chatty/${id}?from=0`);
    if (response.status !== 200) {
      await response.body?.cancel();
      return undefined;
    }
    t.equal(response.headers.get('content-type'), 'text/event-stream');
    t.equal(response.headers.get('access-control-allow-origin'), '*');
    const text = await response.text();
    const events = text.split('\n\n').filter(Boolean);
    const data = events.filter((e) => e.startsWith('id: ')).map((e) => /data: (.*)$/m.exec(e)?.[1]);
    t.same(
      data.filter((d) => d?.startsWith('line')),
      ['line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'line 6'],
    );
    t.match(events.at(-1), /^event: end\ndata: \{"state":"ready","exitCode":0\}$/);
    const ids = events
      .filter((e) => e.startsWith('id: '))
      .map((e) => Number(/^id: (\d+)/.exec(e)?.[1]));
    t.same(
      ids,
      [...ids].sort((a, b) => a - b),
      'offsets grow',
    );
    const log = await readFile(join(box.build, 'chatty', 'ready', id, 'out.log'));
    t.equal(ids.at(-1), log.length, 'last id is the end of out.log');
    return true;
  }, 20_000);
  t.equal((await fetch(`${base}/log/chatty/${id}`)).status, 204, 'ready → 204');
});

t.test('SSE replay from Last-Event-ID has no gap or duplicate', async (t) => {
  const box = await sandbox(t);
  await project(box, 'chatty', {
    script: 'for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 0.4; done',
  });
  const { base } = await startServer(t, box);
  const accepted = await postJob(base, { Project: 'chatty' }, '?async', {
    Accept: 'application/json',
  });
  const id = String(accepted.json?.id);
  const lines: string[] = [];
  let lastId = '';
  const controller = new AbortController();
  const first = await eventually(async () => {
    const response = await fetch(`${base}/log/chatty/${id}?from=0`, { signal: controller.signal });
    return response.status === 200 ? response : undefined;
  });
  const reader = (first.body as ReadableStream<Uint8Array>).getReader();
  let buffer = '';
  while (!lines.includes('line 2')) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += new TextDecoder().decode(value);
    const events = buffer.split('\n\n');
    buffer = events.pop() ?? '';
    for (const event of events) {
      const match = /^id: (\d+)\ndata: (.*)$/.exec(event);
      if (match) {
        lastId = match[1];
        lines.push(match[2]);
      }
    }
  }
  controller.abort();
  const second = await fetch(`${base}/log/chatty/${id}`, { headers: { 'Last-Event-ID': lastId } });
  t.equal(second.status, 200);
  for (const event of (await second.text()).split('\n\n')) {
    const match = /^id: (\d+)\ndata: (.*)$/.exec(event);
    if (match) lines.push(match[2]);
  }
  t.same(
    lines.filter((l) => l.startsWith('line')),
    ['line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'line 6', 'line 7', 'line 8'],
  );
});

t.test('bearer tokens guard builds and downloads only', async (t) => {
  const box = await sandbox(t);
  await project(box, 'simple', { script: 'echo ok > artifacts/out.txt' });
  const tokensFile = join(box.root, 'tokens');
  await writeFile(tokensFile, '# comment\nfile-token\n');
  const server = await startServer(t, box, {
    auth: { tokens: ['s3cret'], tokens_file: tokensFile },
  });
  t.notMatch(server.cli.output(), /s3cret|file-token/, 'tokens never logged');
  const denied = await postJob(server.base, {
    Project: 'simple',
    Params: { foo: 'zxc' },
    Group: '',
    Rebuild: false,
  });
  t.equal(denied.status, 401);
  t.equal(denied.text, 'Unauthorized\n');
  t.equal(denied.headers.get('www-authenticate'), 'Bearer realm="mistry"');
  t.equal(
    (await postJob(server.base, { Project: 'simple' }, '', { Authorization: 'Bearer wrong' }))
      .status,
    401,
  );
  const allowed = await postJob(server.base, { Project: 'simple' }, '', {
    Authorization: 'Bearer s3cret',
  });
  t.equal(allowed.status, 201);
  const fromFile = await postJob(server.base, { Project: 'simple' }, '', {
    Authorization: 'Bearer file-token',
  });
  t.equal(fromFile.status, 201);
  const id = String(allowed.json?.URL).split('/')[2];
  const tarUrl = `${server.base}/jobs/simple/${id}/artifacts.tar`;
  t.equal((await fetch(tarUrl)).status, 401);
  const tar = await fetch(tarUrl, { headers: { Authorization: 'Bearer s3cret' } });
  t.equal(tar.status, 200);
  t.equal(tar.headers.get('content-type'), 'application/x-tar');
  t.ok((await tar.arrayBuffer()).byteLength >= 1536);
  t.equal((await fetch(`${server.base}/index`)).status, 200, 'index open');
  t.equal((await fetch(`${server.base}/`)).status, 200, 'UI open');
  const client = await runCli(
    t,
    [
      'mistry',
      'build',
      '--server',
      server.base,
      '--project',
      'simple',
      '--target',
      join(box.root, 't'),
    ],
    {
      env: { MISTRY_TOKEN: 's3cret' },
    },
  );
  t.equal(client.code, 0, client.stderr);
  t.ok((await stat(join(box.root, 't', 'out.txt'))).isFile());
  t.equal(
    (
      await fetch(`${server.base}/jobs/simple/${'0'.repeat(64)}/artifacts.tar`, {
        headers: { Authorization: 'Bearer s3cret' },
      })
    ).status,
    404,
  );
});
