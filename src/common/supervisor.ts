/**
 * Supervises a running service: the first SIGTERM or SIGINT starts a graceful close bounded by the
 * service's deadline, a second signal or the missed deadline forces it, SIGHUP asks it to reload.
 */
import { ExitCode, type Service } from './component.js';
import type { Logger } from './logger.js';

export interface SupervisionResult {
  code: number;
  /** True when the stop was forced; in-flight work was abandoned on purpose. */
  forced: boolean;
}

/** Waits for the service to end: by itself, by a signal, or forced by a second signal. */
export function supervise(
  service: Service,
  log: Logger,
  signals: Pick<NodeJS.Process, 'on' | 'off'> = process,
): Promise<SupervisionResult> {
  return new Promise((resolve) => {
    let stopping = false;
    const finish = (code: number, forced: boolean): void => {
      signals.off('SIGTERM', onStop);
      signals.off('SIGINT', onStop);
      signals.off('SIGHUP', onReload);
      resolve({ code, forced });
    };
    const force = (why: string): void => {
      log.warn('forcing stop', { reason: why });
      const code = service.destroy();
      finish(typeof code === 'number' ? code : ExitCode.failure, true);
    };
    function onStop(signal: NodeJS.Signals): void {
      if (stopping) return force(`second ${signal}`);
      stopping = true;
      log.info('stop requested', { signal, deadlineMs: service.shutdownTimeoutMs });
      const deadline = setTimeout(
        () => force('shutdown deadline passed'),
        service.shutdownTimeoutMs,
      );
      service.close(signal).then(
        (code) => {
          clearTimeout(deadline);
          finish(code, false);
        },
        (err: unknown) => {
          clearTimeout(deadline);
          log.error('graceful stop failed', { err });
          finish(ExitCode.failure, false);
        },
      );
    }
    function onReload(): void {
      if (!service.reload) return log.info('SIGHUP ignored: nothing to reload');
      service.reload().catch((err: unknown) => log.error('reload failed', { err }));
    }
    signals.on('SIGTERM', onStop);
    signals.on('SIGINT', onStop);
    signals.on('SIGHUP', onReload);
    service.done.then(
      (code) => finish(code, false),
      (err: unknown) => {
        log.error('component failed', { err });
        finish(ExitCode.failure, false);
      },
    );
  });
}
