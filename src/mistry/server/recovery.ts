/**
 * Start-up (spec §3.9): take the single-server lock, remove orphan containers of this build_path,
 * finalise `pending/` builds left by a crash as interrupted, drop dangling links and empty
 * `.trash/`. Runs before the port opens, so no request sees a half-recovered tree.
 */
import type Docker from 'dockerode';
import {
  appendFile,
  lstat,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { StartError } from './config.js';
import { LABEL_BUILD_PATH, LABEL_JOB } from './docker-runner.js';
import type { FilesystemAdapter } from './filesystem.js';
import { LOCK_FILE, Layout, readBuildInfo, writeBuildInfo } from './layout.js';
import type { MistryMetrics } from './metrics.js';

export const CRASH_ERROR = 'interrupted: server stopped before the build finished';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `.mistry-server.lock`; a live holder is refused, a dead one taken over. */
export async function takeLock(buildPath: string): Promise<() => Promise<void>> {
  const path = join(buildPath, LOCK_FILE);
  try {
    await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new StartError(`cannot create ${path}: ${(err as Error).message}`, { cause: err });
    }
    const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
      throw new StartError(
        `build_path ${buildPath} is in use by another mistry-server (pid ${holder})`,
      );
    }
    await writeFile(path, `${process.pid}\n`, { mode: 0o644 });
  }
  return async () => {
    const holder = (await readFile(path, 'utf8').catch(() => '')).trim();
    if (holder === String(process.pid)) await rm(path, { force: true });
  };
}

export interface RecoveryOptions {
  layout: Layout;
  docker: Docker;
  filesystem: FilesystemAdapter;
  logger: Logger;
  metrics: MistryMetrics;
}

/**
 * Force-removes containers labelled with this build_path. Docker being down is logged, not fatal.
 */
export async function removeOrphans(options: RecoveryOptions): Promise<void> {
  let containers: Docker.ContainerInfo[];
  try {
    containers = await options.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_BUILD_PATH}=${options.layout.buildPath}`] },
    });
  } catch (err) {
    options.logger.warn('docker engine unreachable at start; orphan containers not checked', {
      err,
    });
    return;
  }
  for (const info of containers) {
    const name = (info.Names[0] ?? info.Id).replace(/^\//, '');
    try {
      await options.docker.getContainer(info.Id).remove({ force: true });
      options.logger.info(`[cleanup] Removed orphan container ${name}`, {
        job: info.Labels[LABEL_JOB],
      });
    } catch (err) {
      options.logger.warn('could not remove orphan container', { name, err });
    }
  }
}

async function entries(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

/** Finalises or prunes every `pending/<id>`; removes dangling links; empties `.trash/`. */
export async function recoverTree(options: RecoveryOptions): Promise<void> {
  const { layout, filesystem, logger } = options;
  for (const project of await entries(layout.buildPath)) {
    if (project.startsWith('.')) continue;
    const projectDir = layout.project(project);
    if (!(await stat(projectDir).catch(() => undefined))?.isDirectory()) continue;
    for (const id of await entries(layout.pending(project))) {
      const pendingDir = layout.pending(project, id);
      const readyDir = layout.ready(project, id);
      let info;
      try {
        info = await readBuildInfo(pendingDir);
      } catch {
        await filesystem.remove(pendingDir);
        logger.info(`[cleanup] Pruned zombie build '${id}' of project '${project}'`);
        continue;
      }
      if (await stat(readyDir).catch(() => undefined)) {
        await filesystem.remove(pendingDir);
        logger.info(`[cleanup] Pruned zombie build '${id}' of project '${project}'`);
        continue;
      }
      info.ErrBuild = CRASH_ERROR;
      await appendFile(join(pendingDir, 'out.log'), `[mistry] ${CRASH_ERROR}\n`).catch(
        () => undefined,
      );
      await writeBuildInfo(pendingDir, info);
      await rename(pendingDir, readyDir);
      options.metrics.buildsInterrupted.inc({ project, reason: 'crash_recovery' });
      logger.warn(`[cleanup] Finalised interrupted build '${id}' of project '${project}'`);
    }
    const links = [join(projectDir, 'latest')];
    for (const group of await entries(layout.groups(project)))
      links.push(join(layout.groups(project), group));
    for (const link of links) {
      const isLink = (await lstat(link).catch(() => undefined))?.isSymbolicLink();
      if (!isLink) continue;
      if (await stat(link).catch(() => undefined)) continue;
      await rm(link, { force: true });
      logger.info('[cleanup] Removed dangling link', { link });
    }
  }
  for (const name of await entries(layout.trash())) {
    await filesystem.remove(join(layout.trash(), name)).catch((err: unknown) => {
      logger.warn('could not empty .trash', { name, err });
    });
  }
}
