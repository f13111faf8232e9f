/**
 * Filesystem storage: a finished temp file moves to `<root>/<ID[0:3]>/<ID>`, the tree a web server
 * serves, and the directory is fsynced so the rename survives a crash.
 */
import { constants } from 'node:fs';
import {
  copyFile,
  mkdir,
  open,
  readdir,
  rename,
  stat,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import { storageError } from './errors.js';

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * The shard directories (`<root>/<ID[0:3]>`) known to exist, one bit for each of the 64^3 possible
 * names (32 KiB). Most stores go to a shard not seen yet by this process, and guessing wrong
 * costs a failed rename or a needless mkdir, each a trip through the thread pool.
 */
export class ShardDirs {
  private readonly bits = new Uint8Array(64 ** 3 / 8);

  private index(id: string): number {
    let index = 0;
    for (let i = 0; i < 3; i++) {
      const digit = ID_ALPHABET.indexOf(id.charAt(i));
      if (digit < 0) return -1;
      index = index * 64 + digit;
    }
    return index;
  }

  has(id: string): boolean {
    const i = this.index(id);
    return i >= 0 && (this.bits[i >> 3] & (1 << (i & 7))) !== 0;
  }

  add(id: string): void {
    const i = this.index(id);
    if (i >= 0) this.bits[i >> 3] |= 1 << (i & 7);
  }
}

export function storedPath(root: string, id: string): string {
  return join(root, id.slice(0, 3), id);
}

/**
 * Fsyncs `dir` through `opening`, a handle opened while the rename ran (a directory's fsync covers
 * the entries changed after it was opened), or through a new one if that open failed.
 */
async function syncDir(dir: string, opening: Promise<FileHandle | undefined>): Promise<void> {
  const handle = (await opening) ?? (await open(dir, constants.O_RDONLY));
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Renames `tmpPath` to `target`, copying across filesystems; ENOENT when its directory is missing.
 */
async function moveInto(tmpPath: string, target: string): Promise<void> {
  try {
    await rename(tmpPath, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(tmpPath, target);
    await unlink(tmpPath);
  }
}

/**
 * Moves `tmpPath` into place; storage failures are internal DownloadErrors. A shard directory not
 * known to exist is created first; one known to exist is only created again if the rename finds
 * it gone (an operator removed it).
 */
export async function storeFile(
  root: string,
  id: string,
  tmpPath: string,
  shards: ShardDirs,
): Promise<void> {
  const dir = join(root, id.slice(0, 3));
  const target = join(dir, id);
  try {
    if (!shards.has(id)) await mkdir(dir, { recursive: true, mode: 0o755 });
    // Opened alongside the rename, for the fsync that follows it: one trip through the thread
    // pool less for each file. A failed open (the directory was removed) is retried after.
    const opening = open(dir, constants.O_RDONLY).catch(() => undefined);
    try {
      await placeFile(dir, target, tmpPath, shards.has(id));
    } catch (err) {
      await (await opening)?.close().catch(() => undefined);
      throw err;
    }
    shards.add(id);
    await syncDir(dir, opening);
  } catch (err) {
    await unlink(tmpPath).catch(() => undefined);
    throw storageError('storing file to default storage backend', err);
  }
}

/** Renames into `dir`, creating it again if it was known to exist but is gone. */
async function placeFile(
  dir: string,
  target: string,
  tmpPath: string,
  known: boolean,
): Promise<void> {
  try {
    await moveInto(tmpPath, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !known) throw err;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await moveInto(tmpPath, target);
  }
}

/** Deletes a stored file; a missing file counts as deleted. */
export async function deleteStored(root: string, id: string): Promise<void> {
  try {
    await unlink(storedPath(root, id));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Checks that `dir` exists and accepts a file, as the original does at start. */
export async function verifyWritable(dir: string): Promise<void> {
  const probe = join(dir, `.write-check-${process.pid}`);
  const handle = await open(probe, 'w');
  await handle.close();
  await unlink(probe);
}

/** Removes `*.tmp` files in `dir` older than `maxAgeMs`; returns how many went. */
export async function removeOrphans(
  dir: string,
  maxAgeMs: number,
  nowMs = Date.now(),
): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.tmp')) continue;
    const path = join(dir, name);
    try {
      const info = await stat(path);
      if (nowMs - info.mtimeMs < maxAgeMs) continue;
      await unlink(path);
      removed += 1;
    } catch {
      // Gone already, or another processor's file that vanished in between: nothing to do.
    }
  }
  return removed;
}
