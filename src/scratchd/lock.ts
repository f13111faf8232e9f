/** `data_dir/scratchd.lock` (§3.10): our PID, created exclusively; a stale PID is taken over. */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SkroutzError } from '../common/errors.js';

export class LockedError extends SkroutzError {
  constructor(dataDir: string, pid: number) {
    super('ERR_LOCKED', `data_dir ${dataDir} is locked by pid ${pid}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The PID holding the lock when it is alive and not us, else undefined. */
export function lockOwner(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'scratchd.lock'), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)
      ? pid
      : undefined;
  } catch {
    return undefined;
  }
}

/** Takes the lock; returns the stale PID it replaced, if any. Throws LockedError when held. */
export function takeLock(dataDir: string): number | undefined {
  const path = join(dataDir, 'scratchd.lock');
  try {
    writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const owner = lockOwner(dataDir);
  if (owner !== undefined) throw new LockedError(dataDir, owner);
  const stale = Number(readFileSync(path, 'utf8').trim());
  writeFileSync(path, `${process.pid}\n`);
  return Number.isSafeInteger(stale) ? stale : undefined;
}

export function releaseLock(dataDir: string): void {
  const path = join(dataDir, 'scratchd.lock');
  try {
    if (Number(readFileSync(path, 'utf8').trim()) === process.pid) rmSync(path, { force: true });
  } catch {
    // Already gone.
  }
}
