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
  io: CliIo;
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
  reclaimed: number;
}

/**
 * Removes exited containers and dangling images labelled by mistry. Done by hand rather than with
 * the engine's prune calls: those also take containers in the `created` state, which is where a
 * running server's build sits for a moment between create and start. An image still in use is
 * refused by the engine and skipped.
 */
async function pruneLabelled(docker: Docker): Promise<PruneResult> {
  const result: PruneResult = { containers: 0, images: 0, reclaimed: 0 };
  const containers = await docker.listContainers({
    all: true,
    size: true,
    filters: { label: [`${LABEL}=1`], status: ['exited', 'dead'] },
  });
  for (const info of containers) {
    try {
      await docker.getContainer(info.Id).remove({ v: true });
      result.containers++;
      result.reclaimed += (info as { SizeRw?: number }).SizeRw ?? 0;
    } catch {
      // Gone already, or removed by its own server in the meantime.
    }
  }
  const images = await docker.listImages({
    filters: { label: [`${LABEL}=1`], dangling: ['true'] },
  });
  for (const info of images) {
    try {
      await docker.getImage(info.Id).remove();
      result.images++;
      result.reclaimed += info.Size;
    } catch {
      // In use by a container, or shared with a tagged image.
    }
  }
  return result;
}

export async function runRebuild(options: RebuildOptions): Promise<number> {
  const { config, docker, io } = options;
  const say = (line: string): void => void io.stderr.write(`${line}\n`);
  let names = options.projects;
  if (names.length === 0) {
    names = [];
    for (const entry of (await readdir(config.projectsPath)).sort()) {
      const dir = join(config.projectsPath, entry);
      if (!(await stat(dir)).isDirectory()) continue;
      if (await hasDockerfile(dir)) names.push(entry);
      else say(`${dir}/Dockerfile doesn't exist`);
    }
  }
  const failed: string[] = [];
  let rebuilt = 0;
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
        rebuilt++;
        say(`Rebuilt ${name} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      } catch (err) {
        failed.push(name);
        say(`Failed to rebuild ${name}: ${(err as Error).message}`);
        if (options.failFast) break;
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  let pruned: PruneResult = { containers: 0, images: 0, reclaimed: 0 };
  try {
    pruned = await pruneLabelled(docker);
  } catch (err) {
    say(`Pruning failed: ${(err as Error).message}`);
    failed.push('(prune)');
  }
  const prunedContainers = pruned.containers;
  const prunedImages = pruned.images;
  const reclaimed = pruned.reclaimed;
  let summary = `Rebuilt: ${rebuilt}, Pruned images: ${prunedImages}, Pruned containers: ${prunedContainers}, Reclaimed: ${formatBytes(reclaimed)}, Failed: ${failed.length}`;
  if (failed.length > 0) summary += `, Failed names: ${failed.join(', ')}`;
  if (failed.length > 0) {
    io.stderr.write(`Error: ${summary}\n`);
    return ExitCode.failure;
  }
  io.stdout.write(`Finished. ${summary}\n`);
  return ExitCode.ok;
}
