/**
 * Garbage collection of ready builds (spec §3.7) by age, per-project count and disk watermark.
 * Last use is the mtime of `ready/<id>` (set at finish and on every answer naming the build), so
 * it survives restarts. Never removed: link targets, in-flight IDs, builds with open readers and
 * builds answered within `min_idle_s`.
 */
import { lstat, mkdir, readdir, readlink, rename, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { JOB_ID_PATTERN } from '../job-id.js';
import type { BuildManager } from './builds.js';
import type { GcSettings } from './config.js';
import type { FilesystemAdapter } from './filesystem.js';
import type { JobIndex } from './job-index.js';
import type { MistryMetrics } from './metrics.js';

interface Candidate {
  project: string;
  id: string;
  dir: string;
  lastUseMs: number;
}

export interface GcOptions {
  settings: GcSettings;
  builds: BuildManager;
  index: JobIndex;
  filesystem: FilesystemAdapter;
  logger: Logger;
  metrics: MistryMetrics;
  now?: () => number;
}

export type GcReason = 'age' | 'count' | 'disk';

export async function usedRatio(path: string): Promise<number> {
  const info = await statfs(path);
  if (info.blocks === 0) return 0;
  return (info.blocks - info.bfree) / info.blocks;
}

async function freeBytes(path: string): Promise<number> {
  const info = await statfs(path);
  return info.bavail * info.bsize;
}

export class GarbageCollector {
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: GcOptions) {}

  start(): void {
    if (!this.options.settings.enabled) return;
    this.trigger();
    this.timer = setInterval(() => this.trigger(), this.options.settings.intervalS * 1000);
    this.timer.unref();
  }

  stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.running ?? Promise.resolve();
  }

  /** Starts a run unless one is going; errors are logged. */
  trigger(): void {
    if (this.running || !this.options.settings.enabled) return;
    this.running = this.run()
      .then(() => undefined)
      .catch((err: unknown) => this.options.logger.error('gc run failed', { err }))
      .finally(() => (this.running = undefined));
  }

  /** After a build: collect only when the disk is over the high watermark. */
  async afterBuild(): Promise<void> {
    const ratio = await usedRatio(this.options.builds.layout.buildPath).catch(() => 0);
    this.options.metrics.buildPathUsed.set(ratio);
    if (ratio * 100 >= this.options.settings.diskHighPct) this.trigger();
  }

  /** One pass; resolves with what was removed, for tests. */
  async run(): Promise<{ id: string; reason: GcReason }[]> {
    const { settings, builds, metrics } = this.options;
    const layout = builds.layout;
    const now = (this.options.now ?? Date.now)();
    metrics.gcRuns.inc();
    const freeBefore = await freeBytes(layout.buildPath);
    const candidates = await this.candidates();
    const removed: { id: string; reason: GcReason }[] = [];
    const remove = async (candidate: Candidate, reason: GcReason): Promise<boolean> => {
      if (!(await this.removable(candidate, now))) return false;
      if (!(await this.collect(candidate, reason))) return false;
      removed.push({ id: candidate.id, reason });
      return true;
    };
    const left: Candidate[] = [];
    for (const candidate of candidates) {
      const old = settings.maxAgeH > 0 && now - candidate.lastUseMs > settings.maxAgeH * 3_600_000;
      if (!(old && (await remove(candidate, 'age')))) left.push(candidate);
    }
    let remaining = left;
    if (settings.keepPerProject > 0) {
      const byProject = new Map<string, Candidate[]>();
      for (const candidate of remaining) {
        const list = byProject.get(candidate.project) ?? [];
        list.push(candidate);
        byProject.set(candidate.project, list);
      }
      remaining = [];
      for (const list of byProject.values()) {
        list.sort((a, b) => b.lastUseMs - a.lastUseMs);
        let kept = 0;
        for (const candidate of list) {
          if (kept < settings.keepPerProject) {
            kept++;
            remaining.push(candidate);
            continue;
          }
          if (!(await remove(candidate, 'count'))) remaining.push(candidate);
        }
      }
    }
    let ratio = await usedRatio(layout.buildPath);
    if (ratio * 100 >= settings.diskHighPct) {
      remaining.sort((a, b) => a.lastUseMs - b.lastUseMs);
      for (const candidate of remaining) {
        if (ratio * 100 <= settings.diskLowPct) break;
        if (await remove(candidate, 'disk')) ratio = await usedRatio(layout.buildPath);
      }
      if (ratio * 100 > settings.diskLowPct) {
        this.options.logger.warn('gc: disk still over the low watermark, nothing more removable', {
          usedPct: Math.round(ratio * 100),
        });
      }
    }
    metrics.buildPathUsed.set(ratio);
    const gained = (await freeBytes(layout.buildPath)) - freeBefore;
    if (gained > 0) metrics.gcReclaimedBytes.inc(gained);
    return removed;
  }

  private async candidates(): Promise<Candidate[]> {
    const layout = this.options.builds.layout;
    const out: Candidate[] = [];
    for (const project of await readdir(layout.buildPath).catch(() => [] as string[])) {
      if (project.startsWith('.')) continue;
      for (const id of await readdir(layout.ready(project)).catch(() => [] as string[])) {
        if (!JOB_ID_PATTERN.test(id)) continue;
        const dir = layout.ready(project, id);
        const stats = await lstat(dir).catch(() => undefined);
        if (!stats?.isDirectory()) continue;
        out.push({ project, id, dir, lastUseMs: stats.mtimeMs });
      }
    }
    return out;
  }

  private async linkTargets(project: string): Promise<Set<string>> {
    const layout = this.options.builds.layout;
    const targets = new Set<string>();
    const links = [layout.groupLink(project, '')];
    for (const group of await readdir(layout.groups(project)).catch(() => [] as string[])) {
      links.push(join(layout.groups(project), group));
    }
    for (const link of links) {
      const target = await readlink(link).catch(() => undefined);
      if (target !== undefined) targets.add(target);
    }
    return targets;
  }

  /** Age and links; in-flight IDs and readers are the reservation's to refuse (`collect`). */
  private async removable(candidate: Candidate, now: number): Promise<boolean> {
    const { settings } = this.options;
    const stats = await lstat(candidate.dir).catch(() => undefined);
    if (!stats) return false;
    if (now - stats.mtimeMs < settings.minIdleS * 1000) return false;
    return !(await this.linkTargets(candidate.project)).has(candidate.dir);
  }

  /**
   * Takes the build away under the build manager's reservation (§3.7): a request for the ID that
   * arrives meanwhile waits and then builds again, and a hit or download that started first makes
   * GC skip the build. Resolves false when skipped. The slow delete of the renamed dir comes last,
   * outside the reservation.
   */
  private async collect(candidate: Candidate, reason: GcReason): Promise<boolean> {
    const { builds, index, filesystem, logger, metrics, settings } = this.options;
    const trash = builds.layout.trash();
    await mkdir(trash, { recursive: true, mode: 0o755 });
    const release = builds.reserveForRemoval(candidate.id, candidate.dir, settings.minIdleS * 1000);
    if (!release) return false;
    const target = join(trash, `${candidate.project}-${candidate.id}-${Date.now()}`);
    try {
      await rename(candidate.dir, target);
      index.delete(candidate.id);
    } finally {
      release();
    }
    metrics.buildsHosted.set({ project: candidate.project }, index.countReady(candidate.project));
    metrics.gcRemoved.inc({ project: candidate.project, reason });
    logger.info('gc removed build', {
      project: candidate.project,
      id: candidate.id.slice(0, 7),
      reason,
    });
    await filesystem.remove(target);
    return true;
  }
}
