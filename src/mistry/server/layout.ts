/**
 * The on-disk layout under `build_path` (spec §2.5) and the few atomic file operations on it:
 * `build_info.json` through temp + fsync + rename, links swapped through temp link + rename.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { storedBuildInfo, type BuildInfo } from '../build-info.js';

export const TRASH_DIR = '.trash';
export const LOCK_FILE = '.mistry-server.lock';

export class Layout {
  constructor(readonly buildPath: string) {}

  project(project: string): string {
    return join(this.buildPath, project);
  }

  pending(project: string, id?: string): string {
    return id === undefined
      ? join(this.project(project), 'pending')
      : join(this.project(project), 'pending', id);
  }

  ready(project: string, id?: string): string {
    return id === undefined
      ? join(this.project(project), 'ready')
      : join(this.project(project), 'ready', id);
  }

  groups(project: string): string {
    return join(this.project(project), 'groups');
  }

  groupLink(project: string, group: string): string {
    return group === '' ? join(this.project(project), 'latest') : join(this.groups(project), group);
  }

  /** The `Path` of BuildInfo: always the ready location, even while pending. */
  artifactsPath(project: string, id: string): string {
    return join(this.ready(project, id), 'data', 'artifacts');
  }

  trash(): string {
    return join(this.buildPath, TRASH_DIR);
  }
}

/** Writes `build_info.json` in `jobDir` durably: temp file, fsync, rename. */
export async function writeBuildInfo(jobDir: string, info: BuildInfo): Promise<void> {
  const target = join(jobDir, 'build_info.json');
  const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', 0o644);
  try {
    await handle.writeFile(JSON.stringify(storedBuildInfo(info)));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, target);
}

export async function readBuildInfo(jobDir: string): Promise<BuildInfo> {
  const parsed = JSON.parse(await readFile(join(jobDir, 'build_info.json'), 'utf8')) as BuildInfo;
  return storedBuildInfo(parsed);
}

/** Points `link` at `target` atomically (temp link + rename over the old one). */
export async function swapLink(link: string, target: string): Promise<void> {
  const temp = `${link}.${randomBytes(4).toString('hex')}.tmp`;
  await symlink(target, temp);
  try {
    await rename(temp, link);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** The link's target, or undefined when it is missing. */
export async function readLink(link: string): Promise<string | undefined> {
  try {
    return await readlink(link);
  } catch {
    return undefined;
  }
}

/** fsyncs a directory so a rename in it is durable. */
export async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
