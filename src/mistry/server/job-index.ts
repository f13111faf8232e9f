/**
 * The in-memory job index behind `/index`, `/job` and the cache check: one entry per job dir,
 * loaded from `ready/*\/build_info.json` at start and kept current by the scheduler, so listing
 * never reads the disk.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatIndexTime, type BuildInfo } from '../build-info.js';
import { JOB_ID_PATTERN } from '../job-id.js';
import type { Logger } from '../../common/logger.js';
import { readBuildInfo } from './layout.js';

export interface IndexEntry {
  id: string;
  project: string;
  buildInfo: BuildInfo;
  state: 'pending' | 'ready';
}

export class JobIndex {
  private readonly entries = new Map<string, IndexEntry>();

  get(id: string): IndexEntry | undefined {
    return this.entries.get(id);
  }

  set(entry: IndexEntry): void {
    this.entries.set(entry.id, entry);
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  all(): IndexEntry[] {
    return [...this.entries.values()];
  }

  countReady(project: string): number {
    let count = 0;
    for (const entry of this.entries.values()) {
      if (entry.project === project && entry.state === 'ready') count++;
    }
    return count;
  }

  /** Newest StartedAt first, at most `limit` items, in the `/index` shape. */
  list(limit = Infinity): unknown[] {
    return this.all()
      .sort((a, b) => Date.parse(b.buildInfo.StartedAt) - Date.parse(a.buildInfo.StartedAt))
      .slice(0, limit)
      .map((entry) => ({
        id: entry.id,
        project: entry.project,
        startedAt: formatIndexTime(entry.buildInfo.StartedAt),
        buildInfo: entry.buildInfo,
        state: entry.state,
      }));
  }

  /** Reads every ready build under `buildPath`; unreadable records are logged and skipped. */
  async load(buildPath: string, logger: Logger): Promise<void> {
    for (const project of await readdir(buildPath)) {
      if (project.startsWith('.')) continue;
      let ids: string[];
      try {
        ids = await readdir(join(buildPath, project, 'ready'));
      } catch {
        continue;
      }
      for (const id of ids) {
        if (!JOB_ID_PATTERN.test(id)) continue;
        try {
          const buildInfo = await readBuildInfo(join(buildPath, project, 'ready', id));
          this.entries.set(id, { id, project, buildInfo, state: 'ready' });
        } catch (err) {
          logger.warn('ready build without a readable build_info.json', { project, id, err });
        }
      }
    }
  }
}
