/**
 * Harness of the mistry suites: temp projects built FROM scratch on the host's static busybox, a
 * temp build_path, and mistry-server spawned from the built executable on port 0. Everything is
 * removed in teardown, including containers labelled with the test's build_path.
 */
import { copyFile, chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { spawnCli, type RunningCli } from './cli.js';
import { dockerClient } from './services.js';

export const BUSYBOX = '/bin/busybox';

export interface Sandbox {
  root: string;
  projects: string;
  build: string;
}

/** A temp dir with `projects/` and `data/`; its path holds no project name. */
export async function sandbox(t: Test): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), 'mst-'));
  const projects = join(root, 'projects');
  const build = join(root, 'data');
  await mkdir(projects);
  await mkdir(build);
  t.teardown(async () => {
    const docker = dockerClient();
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`skroutz-infra.mistry.build-path=${build}`] },
    });
    for (const info of left) await docker.getContainer(info.Id).remove({ force: true });
    await rm(root, { recursive: true, force: true });
  });
  return { root, projects, build };
}

export interface ProjectOptions {
  /** Body of the `#!/bin/sh` entrypoint, run in /data. */
  script: string;
  /** Extra Dockerfile lines before ENTRYPOINT. */
  dockerfile?: string[];
  /** Extra files relative to the project dir. */
  files?: Record<string, string>;
}

/** Writes a fixture project: FROM scratch + busybox + a shell entrypoint. */
export async function project(
  box: Sandbox,
  name: string,
  options: ProjectOptions,
): Promise<string> {
  const dir = join(box.projects, name);
  await mkdir(dir, { recursive: true });
  await copyFile(BUSYBOX, join(dir, 'busybox'));
  const lines = [
    'FROM scratch',
    'COPY busybox /bin/busybox',
    'RUN ["/bin/busybox","--install","-s","/bin"]',
    ...(options.dockerfile ?? []),
    'COPY docker-entrypoint.sh /',
    'WORKDIR /data',
    'ENTRYPOINT ["/docker-entrypoint.sh"]',
  ];
  await writeFile(join(dir, 'Dockerfile'), `${lines.join('\n')}\n`);
  await writeFile(join(dir, 'docker-entrypoint.sh'), `#!/bin/sh\n${options.script}\n`);
  await chmod(join(dir, 'docker-entrypoint.sh'), 0o755);
  for (const [path, content] of Object.entries(options.files ?? {})) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

export interface RunningServer {
  cli: RunningCli;
  base: string;
  port: number;
  configPath: string;
}

/** Starts mistry-server on 127.0.0.1:0 with the sandbox paths plus `extra` config keys. */
export async function startServer(
  t: Test,
  box: Sandbox,
  extra: Record<string, unknown> = {},
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<RunningServer> {
  const configPath = join(box.root, 'config.json');
  const config = {
    projects_path: box.projects,
    build_path: box.build,
    job_concurrency: 2,
    shutdown_grace_s: 20,
    ...extra,
  };
  await writeFile(configPath, JSON.stringify(config));
  const cli = spawnCli(
    t,
    ['mistry-server', '--config', configPath, '--addr', '127.0.0.1:0', ...args],
    { env },
  );
  const line = await cli.waitForLine(/Listening on /, 30_000);
  const port = Number(/Listening on [^\s"]+:(\d+)\.\.\./.exec(line)?.[1]);
  return { cli, base: `http://127.0.0.1:${port}`, port, configPath };
}

export interface JobAnswer {
  status: number;
  text: string;
  json: Record<string, unknown> | undefined;
  headers: Headers;
}

/** POSTs a raw body to /jobs (query appended as given). */
export async function postJob(
  base: string,
  body: unknown,
  query = '',
  headers: Record<string, string> = {},
): Promise<JobAnswer> {
  const response = await fetch(`${base}/jobs${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json, headers: response.headers };
}

export async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

/** Polls `check` every 50 ms until it returns a value or `ms` passes. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A unique value from the kernel, as the acceptance setup asks. */
export async function uuid(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/uuid', 'utf8')).trim();
}

/** Counts container `start` events labelled with `buildPath` while `fn` runs. */
export async function countStarts(buildPath: string, fn: () => Promise<void>): Promise<number> {
  const docker = dockerClient();
  const startedNs = BigInt(Date.now()) * 1_000_000n;
  const since = Math.floor(Date.now() / 1000) - 1;
  await fn();
  const until = Math.floor(Date.now() / 1000) + 1;
  const stream = await docker.getEvents({
    since,
    until,
    filters: {
      type: ['container'],
      event: ['start'],
      label: [`skroutz-infra.mistry.build-path=${buildPath}`],
    },
  });
  let text = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) text += chunk.toString();
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { timeNano: number })
    .filter((event) => BigInt(event.timeNano) >= startedNs).length;
}
