/**
 * The contract between `main.ts` and a component. A component's module exports `main`, which
 * parses its own arguments and either finishes (returns an exit code, as one-off operator commands
 * do) or returns a running Service. `main.ts` owns the process: it wires signals to the service,
 * enforces the shutdown deadline and sets the exit code, so no component calls `process.exit`.
 */
import type { Writable } from 'node:stream';

/** The process edge a component may touch, passed in so tests can capture it. */
export interface CliIo {
  stdout: Pick<Writable, 'write'>;
  stderr: Pick<Writable, 'write'>;
  env: NodeJS.ProcessEnv;
  /** Working directory for relative paths in flags. */
  cwd: string;
}

/** A running long-lived component. */
export interface Service {
  /**
   * Graceful stop: refuse new work, drain, release. Idempotent: later calls share the promise.
   * Resolves with the exit code the process should end with (0 when everything was persisted).
   */
  close(reason: string): Promise<number>;
  /**
   * Forced stop after a second signal or a missed deadline: abort in-flight work now. May return
   * the exit code when the forced stop still persisted everything (default: failure).
   */
  destroy(): void | number;
  /** Resolves when the service ended on its own (a fatal error), with the exit code. */
  readonly done: Promise<number>;
  /** Upper bound on `close()`, after which `main.ts` forces the exit. */
  readonly shutdownTimeoutMs: number;
  /** SIGHUP handler, for components that reload their config. */
  reload?(): Promise<void>;
  /**
   * Logs the start line. `main.ts` calls it once its signal handlers are installed: a supervisor
   * that sends SIGTERM as soon as it reads the start line must reach `close()`, not the default
   * action, which would kill the process before anything was drained.
   */
  announce?(): void;
}

export type ComponentMain = (argv: string[], io: CliIo) => Promise<number | Service>;

/** Exit codes shared by every subcommand. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notImplemented: 3,
} as const;

/**
 * Runs `fn` once; later callers get the same promise. The shape of every `close()` here.
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= fn();
    return pending;
  };
}
