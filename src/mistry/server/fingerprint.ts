/**
 * Project fingerprints: the regular files of a project dir with their mode, mtime, size and
 * content digest. Digests are cached per file by (path, size, mtime ns, ctime ns, inode), so a
 * request costs one `stat` per file; a file modified within 2 s of hashing is hashed again next
 * time, because a write in the same clock tick would not change its stat key.
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileFingerprint } from '../job-id.js';

const RECENT_NS = 2_000_000_000n;
const SYNC_STAT_ENTRIES = 64;

interface CachedDigest {
  key: string;
  sha256: string;
  trusted: boolean;
}

export interface ProjectFile extends FileFingerprint {
  absolutePath: string;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class FingerprintCache {
  private readonly digests = new Map<string, CachedDigest>();

  /** The project's regular files in path order (directories recursed, symlinks skipped). */
  async scan(projectDir: string): Promise<ProjectFile[]> {
    const out: ProjectFile[] = [];
    await this.walk(projectDir, '', out);
    return out;
  }

  private async walk(root: string, prefix: string, out: ProjectFile[]): Promise<void> {
    const names = (await readdir(join(root, prefix))).sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );
    // A thread-pool round trip costs far more than a stat of a cached inode, so small dirs (the
    // common project) are stat'ed synchronously; big ones go through the pool to keep the loop
    // free.
    const small = names.length <= SYNC_STAT_ENTRIES;
    for (const name of names) {
      const relative = prefix === '' ? name : `${prefix}/${name}`;
      const absolutePath = join(root, relative);
      const stats = small
        ? lstatSync(absolutePath, { bigint: true })
        : await lstat(absolutePath, { bigint: true });
      if (stats.isDirectory()) {
        await this.walk(root, relative, out);
        continue;
      }
      if (!stats.isFile()) continue;
      out.push({
        path: relative,
        absolutePath,
        mode: Number(stats.mode) & 0o7777,
        mtimeS: Number(stats.mtimeNs / 1_000_000_000n),
        size: Number(stats.size),
        sha256: await this.digest(absolutePath, stats),
      });
    }
  }

  private async digest(path: string, stats: import('node:fs').BigIntStats): Promise<string> {
    const key = `${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}:${stats.ino}`;
    const cached = this.digests.get(path);
    if (cached && cached.key === key && cached.trusted) return cached.sha256;
    const hashedAtNs = BigInt(Date.now()) * 1_000_000n;
    const sha256 = await sha256File(path);
    const newest = stats.mtimeNs > stats.ctimeNs ? stats.mtimeNs : stats.ctimeNs;
    this.digests.set(path, { key, sha256, trusted: hashedAtNs - newest > RECENT_NS });
    return sha256;
  }
}
