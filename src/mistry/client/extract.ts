/**
 * Safe extraction of `artifacts.tar` into the target dir: absolute names, `..` segments and writes
 * through symlinks (in a parent or at the entry itself) are refused.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, lstat, mkdir, rm, symlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { readTar, type TarEntryHeader } from '../tar.js';

export class ExtractError extends Error {
  override readonly name = 'ExtractError';
}

async function checkParents(root: string, parts: string[]): Promise<void> {
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    if (stats?.isSymbolicLink())
      throw new ExtractError(`refusing to write through symlink ${current}`);
  }
}

/** Extracts the tar stream under `root`; resolves with the number of entries written. */
export async function extractTar(input: AsyncIterable<Buffer>, root: string): Promise<number> {
  let out: WriteStream | undefined;
  let current: TarEntryHeader | undefined;
  let count = 0;
  const times: [string, number][] = [];
  await readTar(input, {
    entry: async (header) => {
      current = header;
      const parts = header.name.split('/').filter((p) => p !== '' && p !== '.');
      if (header.name.startsWith('/') || parts.includes('..') || parts.length === 0) {
        throw new ExtractError(`refusing unsafe archive entry '${header.name}'`);
      }
      await checkParents(root, parts);
      const target = join(root, ...parts);
      const existing = await lstat(target).catch(() => undefined);
      if (header.type === 'directory') {
        if (existing && !existing.isDirectory()) await rm(target, { force: true, recursive: true });
        await mkdir(target, { recursive: true });
        times.push([target, header.mtimeS]);
      } else {
        if (existing) await rm(target, { force: true, recursive: true });
        await mkdir(join(target, '..'), { recursive: true });
        if (header.type === 'symlink') await symlink(header.linkname ?? '', target);
        else out = createWriteStream(target, { mode: header.mode & 0o777, flags: 'wx' });
      }
      count++;
    },
    data: async (chunk) => {
      if (!out) return;
      const stream = out;
      if (!stream.write(chunk)) await new Promise((resolve) => stream.once('drain', resolve));
    },
    end: async () => {
      const header = current;
      if (out) {
        const stream = out;
        out = undefined;
        await new Promise<void>((resolve, reject) => {
          stream.once('error', reject);
          stream.end(resolve);
        });
      }
      if (header && header.type === 'file') {
        const target = join(root, header.name);
        await chmod(target, header.mode & 0o7777);
        await utimes(target, header.mtimeS, header.mtimeS);
      }
    },
  });
  // Directory times last: writing their children changed them.
  for (const [path, mtimeS] of times.reverse())
    await utimes(path, mtimeS, mtimeS).catch(() => undefined);
  return count;
}
