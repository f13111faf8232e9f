/**
 * mistry benchmarks (spec §7.3), one run, side by side against a baseline measured in the same
 * run: cache-hit latency vs a static GET, coalescing of 20 identical requests, incremental setup
 * on btrfs vs plain, and HTTP vs rsync artifact download. Exits non-zero when a bar is missed.
 *
 * Sizes can be lowered for a quick look: MISTRY_BENCH_CACHE_MIB (1024), MISTRY_BENCH_ARTIFACT_MIB
 * (512). Needs root (loop mount), btrfs-progs, rsync and the Docker engine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';

const run = promisify(execFile);
const EXE = resolve(import.meta.dirname, '../../dist/skroutz-infra');
const CACHE_MIB = Number(process.env.MISTRY_BENCH_CACHE_MIB ?? 1024);
const ARTIFACT_MIB = Number(process.env.MISTRY_BENCH_ARTIFACT_MIB ?? 512);
const docker = new Docker();
const misses: string[] = [];

function report(name: string, value: string, bar?: { ok: boolean; text: string }): void {
  const verdict = bar ? (bar.ok ? `ok (${bar.text})` : `MISS (${bar.text})`) : 'report';
  process.stdout.write(`${name.padEnd(34)} ${value.padEnd(44)} ${verdict}\n`);
  if (bar && !bar.ok) misses.push(name);
}

async function writeProject(projects: string, name: string, script: string): Promise<void> {
  const dir = join(projects, name);
  await mkdir(dir, { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'busybox'));
  await writeFile(
    join(dir, 'Dockerfile'),
    [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox","--install","-s","/bin"]',
      'COPY run.sh /',
      'WORKDIR /data',
      'ENTRYPOINT ["/run.sh"]',
      '',
    ].join('\n'),
  );
  await writeFile(join(dir, 'run.sh'), `#!/bin/sh\n${script}\n`);
  await chmod(join(dir, 'run.sh'), 0o755);
}

interface Server {
  child: ChildProcess;
  port: number;
  output: string[];
}

async function startServer(
  root: string,
  config: Record<string, unknown>,
  args: string[] = [],
): Promise<Server> {
  const path = join(root, `config-${Date.now()}.json`);
  await writeFile(path, JSON.stringify(config));
  const child = spawn(EXE, ['mistry-server', '--config', path, '--addr', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start:\n${output.join('')}`)),
      30_000,
    );
    const onData = (chunk: Buffer): void => {
      output.push(chunk.toString());
      const match = /Listening on [^\s"]+:(\d+)\.\.\./.exec(output.join(''));
      if (match) {
        clearTimeout(timer);
        resolvePort(Number(match[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', () => reject(new Error(`server exited:\n${output.join('')}`)));
  });
  return { child, port, output };
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.kill('SIGTERM');
  await exited;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function call(
  port: number,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolveCall, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolveCall({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', reject);
    req.setTimeout(600_000, () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function cacheHitLatency(root: string, projects: string, build: string): Promise<void> {
  await writeProject(
    projects,
    'hit',
    'head -c 1000 /dev/zero | tr "\\0" x; echo; echo ok > artifacts/out.txt',
  );
  const server = await startServer(root, { projects_path: projects, build_path: build });
  try {
    const body = JSON.stringify({ Project: 'hit', Params: { a: '1' } });
    const first = await call(server.port, 'POST', '/jobs', body);
    if (first.status !== 201)
      throw new Error(`cache-hit setup failed: ${first.status} ${first.text}`);
    for (let i = 0; i < 100; i++) {
      await call(server.port, 'POST', '/jobs', body);
      await call(server.port, 'GET', '/manifest.json');
    }
    const hits: number[] = [];
    const statics: number[] = [];
    for (let i = 0; i < 1000; i++) {
      let start = process.hrtime.bigint();
      const hit = await call(server.port, 'POST', '/jobs', body);
      hits.push(Number(process.hrtime.bigint() - start) / 1e6);
      if (!hit.text.includes('"Cached":true')) throw new Error('not a cache hit');
      start = process.hrtime.bigint();
      await call(server.port, 'GET', '/manifest.json');
      statics.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    const ratio = quantile(hits, 0.5) / quantile(statics, 0.5);
    const p95 = quantile(hits, 0.95) / quantile(statics, 0.95);
    report(
      'cache-hit latency (median ratio)',
      `${quantile(hits, 0.5).toFixed(3)} ms / ${quantile(statics, 0.5).toFixed(3)} ms` +
        ` = ${ratio.toFixed(2)}x, p95 ${p95.toFixed(2)}x`,
      { ok: ratio <= 3, text: '<= 3x' },
    );
  } finally {
    await stopServer(server);
  }
}

async function coalescing(root: string, projects: string, build: string): Promise<void> {
  await writeProject(projects, 'coalesce', 'sleep 3\necho ok > artifacts/out.txt');
  const server = await startServer(root, { projects_path: projects, build_path: build });
  try {
    const since = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ Project: 'coalesce', Params: { run: String(Date.now()) } });
    const done: number[] = [];
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        call(server.port, 'POST', '/jobs', body).then((a) => {
          done.push(Date.now());
          return a;
        }),
      ),
    );
    const events = await docker.getEvents({
      since,
      until: Math.floor(Date.now() / 1000) + 1,
      filters: {
        type: ['container'],
        event: ['start'],
        label: [`skroutz-infra.mistry.build-path=${build}`],
      },
    });
    let text = '';
    for await (const chunk of events as AsyncIterable<Buffer>) text += chunk.toString();
    const starts = text.split('\n').filter((l) => l.trim() !== '').length;
    const created = answers.filter((a) => a.status === 201).length;
    const coalesced = answers.filter((a) => a.text.includes('"Coalesced":true')).length;
    const lag = Math.max(...done) - Math.min(...done);
    report(
      'coalescing (20 identical)',
      `${starts} container start(s), ${created}x201, ${coalesced} coalesced, lag ${lag} ms`,
      {
        ok: starts === 1 && created === 20 && coalesced === 19,
        text: 'exactly 1 start, 19 coalesced',
      },
    );
  } finally {
    await stopServer(server);
  }
}

async function setupSeconds(port: number, incremental: string): Promise<number> {
  const text = (await call(port, 'GET', '/metrics')).text;
  const sum = new RegExp(
    `^mistry_build_setup_seconds_sum\\{[^}]*incremental="${incremental}"[^}]*\\} (\\S+)$`,
    'm',
  ).exec(text);
  return Number(sum?.[1] ?? NaN);
}

async function incrementalSetup(root: string, projects: string): Promise<void> {
  const image = join(root, 'btrfs.img');
  const mount = join(root, 'btrfs');
  await mkdir(mount);
  const gib = Math.max(1, Math.ceil((CACHE_MIB * 3 + 600) / 1024));
  await run('truncate', ['-s', `${gib}G`, image]);
  await run('mkfs.btrfs', ['-q', image]);
  await run('mount', ['-o', 'loop', image, mount]);
  try {
    await writeProject(
      projects,
      'bigcache',
      // A cache of 64 files totalling params/mib MiB, written once; later builds only reuse it.
      [
        'if [ ! -f cache/done ]; then',
        '  n=$(cat params/mib); i=0',
        '  while [ $i -lt 64 ]; do',
        '    head -c $((n * 16384)) /dev/urandom > cache/f$i; i=$((i+1))',
        '  done',
        '  touch cache/done',
        'fi',
        'cat params/v > artifacts/v',
      ].join('\n'),
    );
    const measure = async (fs: string, mib: number): Promise<number> => {
      const build = join(mount, `${fs}-${mib}`);
      await run(
        fs === 'btrfs' ? 'btrfs' : 'mkdir',
        fs === 'btrfs' ? ['subvolume', 'create', build] : [build],
      );
      const server = await startServer(root, { projects_path: projects, build_path: build }, [
        '--filesystem',
        fs,
      ]);
      try {
        for (const v of ['1', '2']) {
          // The base build's data is on disk by the time a real incremental build comes along;
          // without this, a btrfs snapshot would pay for writing back the fresh cache.
          if (v === '2') await run('sync', ['-f', build]);
          const answer = await call(
            server.port,
            'POST',
            '/jobs',
            JSON.stringify({ Project: 'bigcache', Group: 'g', Params: { v, mib: String(mib) } }),
          );
          if (answer.status !== 201) throw new Error(`bigcache build failed: ${answer.text}`);
        }
        return await setupSeconds(server.port, 'true');
      } finally {
        await stopServer(server);
        await rm(build, { recursive: true, force: true }).catch(() => undefined);
      }
    };
    const btrfsBig = await measure('btrfs', CACHE_MIB);
    const plainBig = await measure('plain', CACHE_MIB);
    const btrfsSmall = await measure('btrfs', 1);
    report(
      `incremental setup (${CACHE_MIB} MiB cache)`,
      `btrfs ${(btrfsBig * 1000).toFixed(1)} ms / plain ${(plainBig * 1000).toFixed(1)} ms` +
        ` = ${(btrfsBig / plainBig).toFixed(4)}`,
    );
    report(
      'incremental setup btrfs big/1 MiB',
      `${(btrfsBig * 1000).toFixed(1)} ms / ${(btrfsSmall * 1000).toFixed(1)} ms` +
        ` = ${(btrfsBig / btrfsSmall).toFixed(2)}`,
    );
  } finally {
    await run('umount', [mount]).catch(() => run('umount', ['-l', mount]));
    await rm(image, { force: true });
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function download(root: string, projects: string, build: string): Promise<void> {
  const smallCount = 2048;
  const bigMib = ARTIFACT_MIB / 2;
  const smallKib = Math.max(1, Math.floor((ARTIFACT_MIB * 1024) / 2 / smallCount));
  await writeProject(
    projects,
    'bigart',
    [
      `head -c $((${bigMib} * 1048576)) /dev/urandom > artifacts/big`,
      'mkdir artifacts/small; i=0',
      `while [ $i -lt ${smallCount} ]; do`,
      `  head -c $((${smallKib} * 1024)) /dev/urandom > artifacts/small/f$i; i=$((i+1))`,
      'done',
    ].join('\n'),
  );
  const rsyncPort = await freePort();
  const server = await startServer(root, {
    projects_path: projects,
    build_path: build,
    rsync: { enabled: true, address: '127.0.0.1', port: rsyncPort },
  });
  try {
    const first = await call(server.port, 'POST', '/jobs', JSON.stringify({ Project: 'bigart' }));
    if (first.status !== 201) throw new Error(`bigart failed: ${first.text}`);
    const bytes = ARTIFACT_MIB * 1024 * 1024;
    const time = async (transport: string): Promise<number> => {
      const target = await mkdtemp(join(root, 'dl-'));
      const started = process.hrtime.bigint();
      await run(
        EXE,
        [
          'mistry',
          'build',
          '--server',
          `http://127.0.0.1:${server.port}`,
          '--project',
          'bigart',
          '--quiet',
          '--target',
          target,
          '--transport',
          transport,
          '--rsync-port',
          String(rsyncPort),
        ],
        { maxBuffer: 64 * 1024 * 1024 },
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      await rm(target, { recursive: true, force: true });
      return bytes / seconds / 1024 / 1024;
    };
    const http: number[] = [];
    const rsync: number[] = [];
    for (let i = 0; i < 3; i++) {
      http.push(await time('http'));
      rsync.push(await time('rsync'));
    }
    const ratio = quantile(http, 0.5) / quantile(rsync, 0.5);
    report(
      `artifact download (${ARTIFACT_MIB} MiB)`,
      `http ${quantile(http, 0.5).toFixed(0)} MiB/s` +
        ` / rsync ${quantile(rsync, 0.5).toFixed(0)} MiB/s = ${ratio.toFixed(2)}`,
      {
        ok: ratio >= 0.8,
        text: '>= 0.8',
      },
    );
  } catch (err) {
    process.stderr.write(`mistry-server output:\n${server.output.join('').slice(-4000)}\n`);
    throw err;
  } finally {
    await stopServer(server);
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'mst-bench-'));
  const projects = join(root, 'projects');
  const build = join(root, 'data');
  await mkdir(projects);
  await mkdir(build);
  try {
    await cacheHitLatency(root, projects, build);
    await coalescing(root, projects, build);
    await incrementalSetup(root, projects);
    await download(root, projects, build);
  } finally {
    agent.destroy();
    await rm(root, { recursive: true, force: true });
  }
  if (misses.length > 0) {
    process.stdout.write(`missed: ${misses.join(', ')}\n`);
    process.exitCode = 1;
  }
}

await main();
