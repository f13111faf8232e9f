/**
 * Boots the built scratchd with a config written to a per-test directory and gives the tests its
 * two listeners. Every process is killed and every directory removed in teardown.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import type { Test } from 'tap';
import { spawnCli, type RunningCli } from '../../helpers/cli.js';

export interface Booted {
  cli: RunningCli;
  base: string;
  admin: string;
  dir: string;
  dataDir: string;
  configPath: string;
}

export function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'scratchd-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Short shutdown waits so tests do not sit in pre_stop. */
export const FAST_SHUTDOWN = { pre_stop_ms: 50, inflight_ms: 500, drain_ms: 2000 };

export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const path = join(dir, 'scratchd.json');
  writeFileSync(
    path,
    JSON.stringify({
      data_dir: join(dir, 'data'),
      instance: 'test-1',
      shutdown: FAST_SHUTDOWN,
      ...config,
    }),
  );
  return path;
}

export async function boot(
  t: Test,
  config: Record<string, unknown>,
  options: { dir?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Booted> {
  const dir = options.dir ?? tempDir(t);
  const configPath = writeConfig(dir, config);
  return bootPath(t, dir, configPath, options.env);
}

export async function bootPath(
  t: Test,
  dir: string,
  configPath: string,
  env?: NodeJS.ProcessEnv,
): Promise<Booted> {
  const cli = spawnCli(
    t,
    [
      'scratchd',
      'serve',
      '--config',
      configPath,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
    ],
    { env: { LOG_LEVEL: 'info', ...env } },
  );
  const line = await cli.waitForLine(/"msg":"listening"/, 20_000);
  const parsed = JSON.parse(line) as { listen: string; admin_listen: string; data_dir: string };
  return {
    cli,
    base: `http://${parsed.listen}`,
    admin: `http://${parsed.admin_listen}`,
    dir,
    dataDir: parsed.data_dir,
    configPath,
  };
}

/** Every JSONL line under `root` (the file sink archive), parsed, in file-name order. */
export function archived(root: string, includeOpen = true): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.jsonl') || (includeOpen && name.endsWith('.jsonl.open'))) {
        for (const line of readFileSync(path, 'utf8').split('\n'))
          if (line !== '') out.push(JSON.parse(line) as Record<string, unknown>);
      }
    }
  };
  walk(root);
  return out;
}

export function files(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(path);
    }
  };
  walk(root);
  return out;
}

/** POST with a JSON content type by default; `host` may be set, unlike with fetch. */
export async function post(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown>;
}> {
  const res = await httpRequest(url, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
  });
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    json = { text: res.body.toString('utf8') };
  }
  return { status: res.status, headers: res.headers, json };
}

/** The value of one Prometheus sample, 0 when absent. */
export async function metric(
  admin: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (
    await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(5000) })
  ).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      total += Number(line.split(' ').at(-1));
  }
  return total;
}

export function fileSinkTenant(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tenants: { gr: { hosts: ['*'], sinks: ['archive'], ...extra } },
    sinks: { archive: { type: 'file', linger_ms: 5 } },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A plain node:http request, so `Host` and every other header can be set freely. */
export function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(options.body);
  });
}
