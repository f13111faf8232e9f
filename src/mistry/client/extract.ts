/**
 * Safe extraction of `artifacts.tar` into the target dir: absolute names, `..` segments and writes
 * through symlinks (in a parent or at the entry itself) are refused.
 */
import { lstat, mkdir, open, rm, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { readTar, type TarEntryHeader } from '../tar.js';

const WRITE_BATCH_BYTES = 1024 * 1024;

export class ExtractError extends Error {
  override readonly name = 'ExtractError';
}

/** Extracts the tar stream under `root`; resolves with the number of entries written. */
export async function extractTar(input: AsyncIterable<Buffer>, root: string): Promise<number> {
  let out: FileHandle | undefined;
  let current: TarEntryHeader | undefined;
  let count = 0;
  const times: [string, number][] = [];
  // File data is written in batches: one write per network chunk would cost a pool round trip each.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (handle: FileHandle): Promise<void> => {
    if (pendingBytes === 0) return;
    const data = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    let written = 0;
    while (written < data.length) {
      written += (await handle.write(data, written, data.length - written)).bytesWritten;
    }
  };
  // Dirs this extraction made or checked: no symlink can sit there unless the archive put one.
  const safeDirs = new Set<string>([root]);

  const ensureParents = async (parts: string[]): Promise<void> => {
    let currentDir = root;
    for (const part of parts.slice(0, -1)) {
      currentDir = join(currentDir, part);
      if (safeDirs.has(currentDir)) continue;
      const stats = await lstat(currentDir).catch(() => undefined);
      if (stats?.isSymbolicLink()) {
        throw new ExtractError(`refusing to write through symlink ${currentDir}`);
      }
      if (!stats) await mkdir(currentDir);
      else if (!stats.isDirectory()) throw new ExtractError(`${currentDir} is not a directory`);
      safeDirs.add(currentDir);
    }
  };

  await readTar(input, {
    entry: async (header) => {
      current = header;
      const parts = header.name.split('/').filter((p) => p !== '' && p !== '.');
      if (header.name.startsWith('/') || parts.includes('..') || parts.length === 0) {
        throw new ExtractError(`refusing unsafe archive entry '${header.name}'`);
      }
      await ensureParents(parts);
      const target = join(root, ...parts);
      if (header.type === 'directory') {
        const existing = await lstat(target).catch(() => undefined);
        if (existing && !existing.isDirectory()) await rm(target, { force: true, recursive: true });
        if (!existing?.isDirectory()) await mkdir(target);
        safeDirs.add(target);
        times.push([target, header.mtimeS]);
      } else if (header.type === 'symlink') {
        await rm(target, { force: true, recursive: true });
        safeDirs.delete(target);
        await symlink(header.linkname ?? '', target);
      } else {
        try {
          out = await open(target, 'wx', header.mode & 0o777);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          // Replace whatever is there (a symlink is removed, never followed).
          await rm(target, { force: true, recursive: true });
          out = await open(target, 'wx', header.mode & 0o777);
        }
      }
      count++;
    },
    data: async (chunk) => {
      if (!out) return;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= WRITE_BATCH_BYTES) await flush(out);
    },
    end: async () => {
      const header = current;
      if (!out || !header) return;
      const handle = out;
      out = undefined;
      try {
        await flush(handle);
        await handle.chmod(header.mode & 0o7777);
        await handle.utimes(header.mtimeS, header.mtimeS);
      } finally {
        await handle.close();
      }
    },
  });
  // Directory times last: writing their children changed them.
  for (const [path, mtimeS] of times.reverse()) {
    await utimes(path, mtimeS, mtimeS).catch(() => undefined);
  }
  return count;
}
