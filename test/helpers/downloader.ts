/**
 * A harness for the downloader suites: a config under a private Redis prefix and temp dirs, the
 * three components spawned from the built executable, and loopback origins and callback
 * receivers whose requests the tests inspect.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { spawnCli, type RunningCli } from './cli.js';
import { redisForTest } from './services.js';

export type Component = 'api' | 'processor' | 'notifier';

const START_LINES: Record<Component, RegExp> = {
  api: /"msg":"api_listening"/,
  processor: /"msg":"processor_started"/,
  notifier: /"msg":"notifier_started"/,
};

/** Deep-merges `patch` into `base` (objects only). */
function merge(
  base: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const current = out[key];
    const bothObjects =
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      typeof current === 'object' &&
      current !== null;
    out[key] = bothObjects
      ? merge(current as Record<string, unknown>, value as Record<string, unknown>)
      : value;
  }
  return out;
}

export interface Downloader {
  prefix: string;
  redis: ReturnType<typeof redisForTest>['redis'];
  configPath: string;
  config: Record<string, unknown>;
  storageDir: string;
  rootDir: string;
  downloadUrl: string;
  /** Spawns a component and waits for its start line. */
  start(component: Component, env?: NodeJS.ProcessEnv): Promise<RunningCli>;
  /** Starts the api and returns its base URL. */
  startApi(env?: NodeJS.ProcessEnv): Promise<{ cli: RunningCli; url: string }>;
  /** Writes a changed config (for a restart with other settings). */
  rewrite(patch: Record<string, unknown>): void;
}

export function setupDownloader(t: Test, patch: Record<string, unknown> = {}): Downloader {
  const { redis, prefix } = redisForTest(t);
  const dir = t.testdir({});
  const storageDir = join(dir, 'tmp');
  const rootDir = join(dir, 'files');
  mkdirSync(storageDir);
  mkdirSync(rootDir);
  const downloadUrl = 'http://files.test/base';
  let config = merge(
    {
      redis: { addr: '127.0.0.1:6379', key_prefix: prefix },
      processor: {
        storage_dir: storageDir,
        filestorage: { type: 'filesystem', rootdir: rootDir },
        download_url: downloadUrl,
        metrics_addr: '127.0.0.1:0',
        stats_interval: 300,
        visibility_timeout_ms: 3000,
        shutdown_grace_ms: 3000,
        timeouts: {
          connect_ms: 2000,
          tls_ms: 2000,
          response_ms: 5000,
          idle_ms: 5000,
          attempt_ms: 20_000,
        },
      },
      notifier: {
        concurrency: 20,
        deletion_interval: 1,
        metrics_addr: '127.0.0.1:0',
        stats_interval: 300,
        visibility_timeout_ms: 3000,
        shutdown_grace_ms: 3000,
      },
      backends: { http: { timeout: 5 } },
      log: { level: 'info' },
    },
    patch,
  );
  const configPath = join(dir, 'downloader.json');
  writeFileSync(configPath, JSON.stringify(config));
  const env = { DOWNLOADER_TEST_TIME: '1' };
  const start = async (
    component: Component,
    extra: NodeJS.ProcessEnv = {},
  ): Promise<RunningCli> => {
    const args = [`downloader-${component}`, '-c', configPath];
    if (component === 'api') args.push('--host', '127.0.0.1', '--port', '0');
    const cli = spawnCli(t, args, { env: { ...env, ...extra } });
    await cli.waitForLine(START_LINES[component], 15_000);
    return cli;
  };
  return {
    prefix,
    redis,
    configPath,
    get config() {
      return config;
    },
    storageDir,
    rootDir,
    downloadUrl,
    start,
    startApi: async (extra = {}) => {
      const cli = await start('api', extra);
      const line = await cli.waitForLine(START_LINES.api);
      const port = (JSON.parse(line) as { port: number }).port;
      return { cli, url: `http://127.0.0.1:${port}` };
    },
    rewrite: (more) => {
      config = merge(config, more);
      writeFileSync(configPath, JSON.stringify(config));
    },
  };
}

export type Route = (req: IncomingMessage, res: ServerResponse) => void;

export interface Origin {
  url: string;
  /** Requests seen per path. */
  hits: Map<string, number>;
  /** Highest number of requests in flight at once. */
  peak: number;
  active: number;
  requests: IncomingMessage[];
  route(path: string, handler: Route): void;
  server: Server;
}

/** A loopback HTTP server whose routes a test defines; unknown paths answer 404. */
export async function startOrigin(t: Test): Promise<Origin> {
  const routes = new Map<string, Route>();
  const origin: Origin = {
    url: '',
    hits: new Map(),
    peak: 0,
    active: 0,
    requests: [],
    route: (path, handler) => routes.set(path, handler),
    server: createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      origin.hits.set(path, (origin.hits.get(path) ?? 0) + 1);
      origin.requests.push(req);
      origin.active += 1;
      origin.peak = Math.max(origin.peak, origin.active);
      res.on('close', () => (origin.active -= 1));
      const handler = routes.get(path);
      if (handler) handler(req, res);
      else {
        res.writeHead(404);
        res.end('not found');
      }
    }),
  };
  await new Promise<void>((resolve) => origin.server.listen(0, '127.0.0.1', resolve));
  origin.url = `http://127.0.0.1:${(origin.server.address() as AddressInfo).port}`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        origin.server.closeAllConnections();
        origin.server.close(() => resolve());
      }),
  );
  return origin;
}

export interface Callback {
  body: Record<string, unknown>;
  raw: string;
  at: number;
}

export interface Receiver {
  url: string;
  callbacks: Callback[];
  /** Every request, answered 2xx or not. */
  all: Callback[];
  /** Status codes to answer with, in order; 200 once they run out. */
  statuses: number[];
  /** Waits until `count` callbacks arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<Callback[]>;
  server: Server;
}

export async function startReceiver(t: Test): Promise<Receiver> {
  const receiver: Receiver = {
    url: '',
    callbacks: [],
    all: [],
    statuses: [],
    waitFor: async (count, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      while (receiver.callbacks.length < count) {
        if (Date.now() > deadline) {
          throw new Error(
            `only ${receiver.callbacks.length} of ${count} callbacks within ${timeoutMs} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return receiver.callbacks;
    },
    server: createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const status = receiver.statuses.shift() ?? 200;
        const raw = Buffer.concat(chunks).toString('utf8');
        const entry = { body: JSON.parse(raw) as Record<string, unknown>, raw, at: Date.now() };
        receiver.all.push(entry);
        if (status >= 200 && status < 300) {
          receiver.callbacks.push(entry);
        }
        res.writeHead(status);
        res.end();
      });
    }),
  };
  await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/cb`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        receiver.server.closeAllConnections();
        receiver.server.close(() => resolve());
      }),
  );
  return receiver;
}

/** POSTs a job (object or raw text) to the api. */
export async function post(
  apiUrl: string,
  body: unknown,
  path = '/download',
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(`${apiUrl}${path}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** POSTs a job that must be accepted; returns its id. */
export async function submit(apiUrl: string, job: Record<string, unknown>): Promise<string> {
  const answer = await post(apiUrl, job);
  if (answer.status !== 201)
    throw new Error(`POST /download answered ${answer.status}: ${answer.text}`);
  return (JSON.parse(answer.text) as { id: string }).id;
}

/** Small files of known types, built in code so no binary fixture is needed. */
export const FILES = {
  /** A PNG header of a 10x10 image. */
  png: Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.from([0, 0, 0, 13]),
    Buffer.from('IHDR'),
    Buffer.from([0, 0, 0, 10, 0, 0, 0, 10, 8, 2, 0, 0, 0]),
    Buffer.from([0x02, 0x50, 0x58, 0xea]),
    Buffer.alloc(64, 0),
  ]),
  /** A JPEG with a 32x16 baseline frame header. */
  jpeg: Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
    Buffer.from('JFIF\0'),
    Buffer.from([1, 1, 0, 0, 1, 0, 1, 0, 0]),
    Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x20, 0x03]),
    Buffer.from([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]),
    Buffer.alloc(5000, 0x55),
    Buffer.from([0xff, 0xd9]),
  ]),
  pdf: Buffer.from(
    '%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n',
  ),
  bmp: Buffer.concat([
    Buffer.from('BM'),
    Buffer.from([0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 0x28, 0, 0, 0]),
    Buffer.alloc(60, 0),
  ]),
  psd: Buffer.concat([Buffer.from('8BPS'), Buffer.from([0, 1]), Buffer.alloc(200, 0)]),
};
