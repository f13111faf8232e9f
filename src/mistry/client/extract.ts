/**
 * Safe extraction of `artifacts.tar` into the target dir: absolute names, `..` segments and writes
 * through symlinks (in a parent or at the entry itself) are refused.
 *
 * File system calls are synchronous on purpose: this runs in the one-shot client with nothing
 * else to serve, and a thread-pool round trip per call made thousands of small artifacts several
 * times slower to write than `tar -x`. Only file data is written asynchronously, overlapping the
 * download.
 */
import {
  closeSync,
  fchmodSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writev,
  writevSync,
} from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readTar, type TarEntryHeader } from '../tar.js';

const WRITE_BATCH_BYTES = 1024 * 1024;

export class ExtractError extends Error {
  override readonly name = 'ExtractError';
}

const writeChunks = promisify(writev);

/** What is left of `chunks` once its first `written` bytes are gone. */
function after(chunks: Buffer[], written: number): Buffer[] {
  let skip = written;
  let index = 0;
  while (index < chunks.length && skip >= chunks[index].length) skip -= chunks[index++].length;
  const rest = chunks.slice(index);
  if (skip > 0) rest[0] = rest[0].subarray(skip);
  return rest;
}

// Chunks go to the file as they came off the socket, with one gathering write: no copy into one
// buffer first. A short write (rare on a regular file) writes the rest again.
async function writeAll(fd: number, chunks: Buffer[]): Promise<void> {
  for (let rest = chunks; rest.length > 0;) {
    rest = after(rest, (await writeChunks(fd, rest)).bytesWritten);
  }
}

function writeAllSync(fd: number, chunks: Buffer[]): void {
  for (let rest = chunks; rest.length > 0;) rest = after(rest, writevSync(fd, rest));
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}

/** Extracts the tar stream under `root`; resolves with the number of entries written. */
export async function extractTar(input: AsyncIterable<Buffer>, root: string): Promise<number> {
  let fd: number | undefined;
  let current: TarEntryHeader | undefined;
  let count = 0;
  const times: [string, number][] = [];
  // Dirs this extraction made or checked: no symlink can sit there unless the archive put one.
  const safeDirs = new Set<string>([root]);
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  // Data goes out with one write in flight while the next batch arrives, so disk and network
  // overlap; the metadata calls around it stay synchronous.
  let inFlight: Promise<void> = Promise.resolve();
  const flush = async (): Promise<void> => {
    await inFlight;
    if (fd === undefined || pendingBytes === 0) return;
    inFlight = writeAll(fd, pending);
    pending = [];
    pendingBytes = 0;
  };

  const ensureParents = (parts: string[]): void => {
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      dir = join(dir, part);
      if (safeDirs.has(dir)) continue;
      const stats = lstatOrUndefined(dir);
      if (stats?.isSymbolicLink())
        throw new ExtractError(`refusing to write through symlink ${dir}`);
      if (!stats) mkdirSync(dir);
      else if (!stats.isDirectory()) throw new ExtractError(`${dir} is not a directory`);
      safeDirs.add(dir);
    }
  };

  const openFile = (target: string, mode: number): number => {
    try {
      return openSync(target, 'wx', mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Replace whatever is there (a symlink is removed, never followed).
      rmSync(target, { force: true, recursive: true });
      return openSync(target, 'wx', mode);
    }
  };

  try {
    await readTar(input, {
      entry: (header) => {
        current = header;
        const parts = header.name.split('/').filter((p) => p !== '' && p !== '.');
        if (header.name.startsWith('/') || parts.includes('..') || parts.length === 0) {
          throw new ExtractError(`refusing unsafe archive entry '${header.name}'`);
        }
        ensureParents(parts);
        const target = join(root, ...parts);
        if (header.type === 'directory') {
          const existing = lstatOrUndefined(target);
          if (existing && !existing.isDirectory()) rmSync(target, { force: true, recursive: true });
          if (!existing?.isDirectory()) mkdirSync(target);
          safeDirs.add(target);
          times.push([target, header.mtimeS]);
        } else if (header.type === 'symlink') {
          rmSync(target, { force: true, recursive: true });
          safeDirs.delete(target);
          symlinkSync(header.linkname ?? '', target);
        } else {
          fd = openFile(target, header.mode & 0o777);
        }
        count++;
      },
      data: async (chunk) => {
        if (fd === undefined) return;
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= WRITE_BATCH_BYTES) await flush();
      },
      end: async () => {
        const header = current;
        if (fd === undefined || !header) return;
        const handle = fd;
        try {
          // The tail (all of a small file) is written in place: no pool round trip per file.
          await inFlight;
          writeAllSync(handle, pending);
          pending = [];
          pendingBytes = 0;
          fchmodSync(handle, header.mode & 0o7777);
          futimesSync(handle, header.mtimeS, header.mtimeS);
        } finally {
          fd = undefined;
          closeSync(handle);
        }
      },
    });
  } finally {
    await inFlight.catch(() => undefined);
    if (fd !== undefined) closeSync(fd);
  }
  // Directory times last: writing their children changed them.
  for (const [path, mtimeS] of times.reverse()) {
    try {
      utimesSync(path, mtimeS, mtimeS);
    } catch {
      // A dir the archive replaced later; its time does not matter.
    }
  }
  return count;
}
