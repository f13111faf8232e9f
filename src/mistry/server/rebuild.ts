/**
 * `mistry-server rebuild` (spec §3.12): rebuilds each project's image with pull and no cache, then
 * prunes stopped containers and dangling images labelled `skroutz-infra.mistry=1` only.
 */
import type Docker from 'dockerode';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CliIo } from '../../common/component.js';
import { ExitCode } from '../../common/component.js';
import type { ServerConfig } from './config.js';
import { LABEL, buildImage } from './docker-runner.js';
import { FingerprintCache } from './fingerprint.js';
import { LogHub } from './log-hub.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';

export interface RebuildOptions {
  config: ServerConfig;
  docker: Docker;
  projects: string[];
  failFast: boolean;
  verbose: boolean;
  /** Print one JSON report on stdout instead of the `Finished.` line. */
  json: boolean;
  /**
   * Leftovers younger than this (seconds since a container finished or an image was created) are
   * kept: a running server's build passes through both states on its way to a result.
   */
  pruneMinAgeS: number;
  io: CliIo;
}

/** One project's result in the `--json` report. */
export interface ProjectOutcome {
  name: string;
  ok: boolean;
  /** Why the rebuild failed; absent on success. */
  error?: string;
  durationMs: number;
}

/** The `--json` report: one object on stdout once everything is done. */
export interface RebuildReport {
  ok: boolean;
  projects: ProjectOutcome[];
  /** Project dirs without a Dockerfile, found when no `--project` was given. */
  skipped: string[];
  /** Projects left untried after a failure under `--fail-fast`. */
  notAttempted: string[];
  rebuilt: number;
  /** Names that failed, in order; `(prune)` when pruning failed. */
  failed: string[];
  pruned: PruneResult & { ok: boolean; error?: string };
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

async function hasDockerfile(path: string): Promise<boolean> {
  return (await stat(join(path, 'Dockerfile')).catch(() => undefined))?.isFile() === true;
}

interface PruneResult {
  containers: number;
  images: number;
  reclaimedBytes: number;
}

/**
 * Removes exited containers and dangling images labelled by mistry, older than `minAgeS`. Done by
 * hand rather than with the engine's prune calls: those also take containers in the `created`
 * state, which is where a running server's build sits for a moment between create and start. The
 * age bound keeps what a running server is still using: a container that exited a moment ago whose
 * result is being collected, and an image that a build produced but has not tagged yet. An image
 * still in use is refused by the engine and skipped.
 *
 * TODO: an old dangling image can still be the build cache of a build a running server has in
 * progress (projects with identical first steps share layers), and the engine does not protect a
 * cache parent from removal, so that build fails; only a lock shared with the server would close
 * this, and the servers and this command share nothing but the engine.
 */
async function pruneLabelled(docker: Docker, minAgeS: number): Promise<PruneResult> {
  const result: PruneResult = { containers: 0, images: 0, reclaimedBytes: 0 };
  const cutoffMs = Date.now() - minAgeS * 1000;
  const containers = await docker.listContainers({
    all: true,
    size: true,
    filters: { label: [`${LABEL}=1`], status: ['exited', 'dead'] },
  });
  for (const info of containers) {
    try {
      const container = docker.getContainer(info.Id);
      const finishedMs = Date.parse((await container.inspect()).State.FinishedAt);
      if (!(finishedMs < cutoffMs)) continue;
      await container.remove({ v: true });
      result.containers++;
      result.reclaimedBytes += (info as { SizeRw?: number }).SizeRw ?? 0;
    } catch {
      // Gone already, or removed by its own server in the meantime.
    }
  }
  const images = await docker.listImages({
    filters: { label: [`${LABEL}=1`], dangling: ['true'] },
  });
  for (const info of images) {
    if (info.Created * 1000 >= cutoffMs) continue;
    try {
      await docker.getImage(info.Id).remove();
      result.images++;
      result.reclaimedBytes += info.Size;
    } catch {
      // In use by a container, or shared with a tagged image.
    }
  }
  return result;
}

export async function runRebuild(options: RebuildOptions): Promise<number> {
  const { config, docker, io } = options;
  const say = (line: string): void => void io.stderr.write(`${line}\n`);
  const skipped: string[] = [];
  let names = options.projects;
  if (names.length === 0) {
    names = [];
    for (const entry of (await readdir(config.projectsPath)).sort()) {
      const dir = join(config.projectsPath, entry);
      if (!(await stat(dir)).isDirectory()) continue;
      if (await hasDockerfile(dir)) names.push(entry);
      else {
        skipped.push(entry);
        say(`${dir}/Dockerfile doesn't exist`);
      }
    }
  }
  const outcomes: ProjectOutcome[] = [];
  const failed: string[] = [];
  const fingerprints = new FingerprintCache();
  const scratch = await mkdtemp(join(tmpdir(), 'mistry-rebuild-'));
  try {
    for (const name of names) {
      const dir = join(config.projectsPath, name);
      say(`Rebuilding ${name}...`);
      const started = Date.now();
      try {
        if (!/^[A-Za-z0-9_@][A-Za-z0-9._@-]{0,127}$/.test(name) || !(await hasDockerfile(dir))) {
          throw new Error(`${dir}/Dockerfile doesn't exist`);
        }
        const hub = new LogHub(join(scratch, `${name}.log`));
        hub.start();
        const log = options.verbose
          ? Object.assign(Object.create(hub) as LogHub, {
              write: (text: string | Buffer) => {
                hub.write(text);
                io.stderr.write(text);
              },
            })
          : hub;
        try {
          await buildImage(docker, {
            project: name,
            files: await fingerprints.scan(dir),
            uid: config.uid,
            rebuild: true,
            log,
            signal: new AbortController().signal,
          });
        } finally {
          hub.close();
        }
        const durationMs = Date.now() - started;
        outcomes.push({ name, ok: true, durationMs });
        say(`Rebuilt ${name} in ${(durationMs / 1000).toFixed(1)}s`);
      } catch (err) {
        const error = (err as Error).message;
        outcomes.push({ name, ok: false, error, durationMs: Date.now() - started });
        failed.push(name);
        say(`Failed to rebuild ${name}: ${error}`);
        if (options.failFast) break;
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  let pruned: RebuildReport['pruned'] = { ok: true, containers: 0, images: 0, reclaimedBytes: 0 };
  try {
    pruned = { ok: true, ...(await pruneLabelled(docker, options.pruneMinAgeS)) };
  } catch (err) {
    const error = (err as Error).message;
    say(`Pruning failed: ${error}`);
    pruned = { ...pruned, ok: false, error };
    failed.push('(prune)');
  }
  const rebuilt = outcomes.filter((outcome) => outcome.ok).length;
  let summary = `Rebuilt: ${rebuilt}, Pruned images: ${pruned.images}, Pruned containers: ${pruned.containers}, Reclaimed: ${formatBytes(pruned.reclaimedBytes)}, Failed: ${failed.length}`;
  if (failed.length > 0) summary += `, Failed names: ${failed.join(', ')}`;
  if (options.json) {
    const report: RebuildReport = {
      ok: failed.length === 0,
      projects: outcomes,
      skipped,
      notAttempted: names.slice(outcomes.length),
      rebuilt,
      failed,
      pruned,
    };
    io.stdout.write(`${JSON.stringify(report)}\n`);
  }
  if (failed.length > 0) {
    io.stderr.write(`Error: ${summary}\n`);
    return ExitCode.failure;
  }
  if (!options.json) io.stdout.write(`Finished. ${summary}\n`);
  return ExitCode.ok;
}
