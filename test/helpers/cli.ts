/**
 * Spawns the built executable the way production runs it, collects its output line by line, and
 * stops it with a signal. Every child is killed in teardown, so nothing outlives its test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Test } from 'tap';

export const EXECUTABLE = resolve(import.meta.dirname, '../../dist/skroutz-infra');

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Data written to stdin, then stdin is closed. Default: stdin closed at once. */
  input?: string | Buffer;
}

export interface RunningCli {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the first stdout or stderr line that matches, or rejects after timeoutMs. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code (or signal name). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
  /** Resolves with the exit code once the process ends by itself. */
  exited(timeoutMs?: number): Promise<number | string>;
  /** All output so far, for diagnostics. */
  output(): string;
}

function splitLines(target: string[], onLine: (line: string) => void): (chunk: Buffer) => void {
  let partial = '';
  return (chunk) => {
    partial += chunk.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      target.push(line);
      onLine(line);
    }
  };
}

export function spawnCli(t: Test, args: string[], options: SpawnOptions = {}): RunningCli {
  if (!existsSync(EXECUTABLE)) throw new Error(`${EXECUTABLE} is missing: run make build first`);
  const child = spawn(EXECUTABLE, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const watchers = new Set<(line: string) => void>();
  const notify = (line: string): void => watchers.forEach((watch) => watch(line));
  child.stdout?.on('data', splitLines(stdout, notify));
  child.stderr?.on('data', splitLines(stderr, notify));
  child.stdin?.end(options.input);
  const exit = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
  });

  const output = (): string => [...stdout, ...stderr].join('\n');
  const withTimeout = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
    new Promise<T>((resolvePromise, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${what} after ${ms} ms; output:\n${output()}`)),
        ms,
      );
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolvePromise(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });

  const waitForLine = (pattern: RegExp, timeoutMs = 20_000): Promise<string> => {
    const seen = [...stdout, ...stderr].find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    let watcher: ((line: string) => void) | undefined;
    const found = new Promise<string>((resolveLine, reject) => {
      watcher = (line) => {
        if (pattern.test(line)) resolveLine(line);
      };
      watchers.add(watcher);
      void exit.then((code) =>
        reject(new Error(`exited with ${code} before ${String(pattern)}:\n${output()}`)),
      );
    });
    return withTimeout(found, timeoutMs, `no line matching ${String(pattern)}`).finally(() => {
      if (watcher) watchers.delete(watcher);
    });
  };

  return {
    child,
    stdout,
    stderr,
    waitForLine,
    output,
    exited: (timeoutMs = 30_000) => withTimeout(exit, timeoutMs, 'process did not exit'),
    stop: (signal = 'SIGTERM', timeoutMs = 30_000) => {
      child.kill(signal);
      return withTimeout(exit, timeoutMs, `process did not exit on ${signal}`);
    },
  };
}

/** Runs the executable to completion; resolves with its code and whole output. */
export async function runCli(
  t: Test,
  args: string[],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const cli = spawnCli(t, args, options);
  const code = await cli.exited(options.timeoutMs ?? 30_000);
  return { code, stdout: cli.stdout.join('\n'), stderr: cli.stderr.join('\n') };
}
