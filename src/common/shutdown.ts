/**
 * Ordered shutdown: each step runs even if an earlier one failed, with its own time limit, and the
 * failures are logged and reported rather than thrown, so one broken peer cannot skip the rest.
 */
import type { Logger } from './logger.js';

export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
  /** Limit for this step; past it the step is abandoned and reported as failed. */
  timeoutMs?: number;
}

/** Runs the steps in order; returns the names of the steps that failed or timed out. */
export async function runShutdownSteps(
  steps: readonly ShutdownStep[],
  logger: Logger,
): Promise<string[]> {
  const failed: string[] = [];
  for (const step of steps) {
    const started = Date.now();
    try {
      await withDeadline(Promise.resolve().then(step.run), step.timeoutMs);
      logger.debug('shutdown step done', { step: step.name, durationMs: Date.now() - started });
    } catch (err) {
      failed.push(step.name);
      logger.error('shutdown step failed', { step: step.name, err });
    }
  }
  return failed;
}

function withDeadline<T>(work: Promise<T>, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`step timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
