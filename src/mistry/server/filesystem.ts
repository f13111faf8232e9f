/**
 * Filesystem adapters (spec §3.5): how a job dir is created, cloned from a group's last good
 * build and removed. `plain` uses mkdir and a full `cp -a`; `btrfs` uses subvolumes and snapshots.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, statfs } from 'node:fs/promises';
import { lstat } from 'node:fs/promises';
import type { FilesystemKind } from './config.js';

const BTRFS_SUPER_MAGIC = 0x9123683e;

export interface FilesystemAdapter {
  readonly kind: FilesystemKind;
  create(path: string): Promise<void>;
  clone(source: string, target: string): Promise<void>;
  remove(path: string): Promise<void>;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
}

/** Runs a command; errors read `<command> failed: <exit status> (<output>)`. */
export function runCommand(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const status =
        typeof err.code === 'number' ? `exit status ${err.code}` : String(err.code ?? err.signal);
      const output = `${stdout}${stderr}`.trim();
      reject(new CommandError(`${[command, ...args].join(' ')} failed: ${status} (${output})`));
    });
  });
}

export class PlainFilesystem implements FilesystemAdapter {
  readonly kind = 'plain' as const;

  async create(path: string): Promise<void> {
    await mkdir(path, { mode: 0o755 });
  }

  async clone(source: string, target: string): Promise<void> {
    await runCommand('cp', ['-a', '--reflink=never', source, target]);
  }

  async remove(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }
}

async function isSubvolume(path: string): Promise<boolean> {
  try {
    const stats = await lstat(path);
    // Subvolume roots have inode 256 on btrfs.
    return stats.isDirectory() && stats.ino === 256;
  } catch {
    return false;
  }
}

export class BtrfsFilesystem implements FilesystemAdapter {
  readonly kind = 'btrfs' as const;

  async create(path: string): Promise<void> {
    await runCommand('btrfs', ['subvolume', 'create', path]);
  }

  async clone(source: string, target: string): Promise<void> {
    if (await isSubvolume(source)) {
      await runCommand('btrfs', ['subvolume', 'snapshot', source, target]);
      return;
    }
    await this.create(target);
    await runCommand('cp', ['-a', '--reflink=auto', `${source}/.`, target]);
  }

  async remove(path: string): Promise<void> {
    if (await isSubvolume(path)) {
      await runCommand('btrfs', ['subvolume', 'delete', path]);
      return;
    }
    await rm(path, { recursive: true, force: true });
  }
}

/** The adapter for `kind`; `btrfs` is refused unless `buildPath` is on btrfs. */
export async function createFilesystem(
  kind: FilesystemKind,
  buildPath: string,
): Promise<FilesystemAdapter> {
  if (kind === 'plain') return new PlainFilesystem();
  const info = await statfs(buildPath);
  if (info.type !== BTRFS_SUPER_MAGIC) throw new Error(`build_path ${buildPath} is not on btrfs`);
  return new BtrfsFilesystem();
}
