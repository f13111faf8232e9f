/**
 * Image builds and container runs on the Docker engine (spec §3.4, §2.7). The build context is a
 * tar of the project's fingerprinted files; the container runs the image ID its own build made,
 * with the job's data dir bound at `/data`.
 */
import type Docker from 'dockerode';
import { Writable } from 'node:stream';
import { tarStream, type TarSource } from '../tar.js';
import type { ProjectFile } from './fingerprint.js';
import type { LogHub } from './log-hub.js';

export const LABEL = 'skroutz-infra.mistry';
export const LABEL_PROJECT = `${LABEL}.project`;
export const LABEL_JOB = `${LABEL}.job`;
export const LABEL_BUILD_PATH = `${LABEL}.build-path`;

/** ContainerStderr is capped; the rest still goes to out.log. */
export const MAX_STDERR_BYTES = 8 * 1024 * 1024;

export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
}

export class BuildTimeoutError extends Error {
  override readonly name = 'BuildTimeoutError';
}

interface ProgressEvent {
  stream?: string;
  status?: string;
  progress?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

/** The engine's message from a dockerode HTTP error, else the error's own message. */
export function dockerMessage(err: unknown): string {
  const json = (err as { json?: unknown }).json;
  if (
    json &&
    typeof json === 'object' &&
    typeof (json as { message?: unknown }).message === 'string'
  ) {
    return (json as { message: string }).message.trim();
  }
  if (typeof json === 'string' && json.trim() !== '') return json.trim();
  return err instanceof Error ? err.message : String(err);
}

function contextEntries(files: readonly ProjectFile[]): TarSource[] {
  const dirs = new Set<string>();
  const out: TarSource[] = [];
  for (const file of files) {
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      out.push({ name: dir, type: 'directory', mode: 0o755, mtimeS: file.mtimeS, size: 0 });
    }
    out.push({
      name: file.path,
      type: 'file',
      mode: file.mode,
      mtimeS: file.mtimeS,
      size: file.size,
      sourcePath: file.absolutePath,
    });
  }
  return out;
}

export interface ImageBuildOptions {
  project: string;
  files: readonly ProjectFile[];
  uid: string;
  rebuild: boolean;
  log: LogHub;
  signal: AbortSignal;
}

/** Builds `mistry-<project>`, streaming progress into out.log; resolves with the image ID. */
export async function buildImage(docker: Docker, options: ImageBuildOptions): Promise<string> {
  const name = `mistry-${options.project}`;
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(tarStream(contextEntries(options.files)), {
      t: name,
      buildargs: { uid: options.uid },
      networkmode: 'host',
      pull: options.rebuild ? 'true' : undefined,
      nocache: options.rebuild,
      forcerm: true,
      rm: true,
      labels: { [LABEL]: '1', [LABEL_PROJECT]: options.project },
      abortSignal: options.signal,
    } as Docker.ImageBuildOptions);
  } catch (err) {
    if (options.signal.aborted) throw options.signal.reason as Error;
    const message = dockerMessage(err);
    options.log.write(`${message}\n`);
    throw new ImageBuildError(`could not build docker image '${name}': ${message}`, { cause: err });
  }
  let imageId: string | undefined;
  let failure: string | undefined;
  let partial = '';
  const onLine = (line: string): void => {
    if (line.trim() === '') return;
    let event: ProgressEvent;
    try {
      event = JSON.parse(line) as ProgressEvent;
    } catch {
      options.log.write(`${line}\n`);
      return;
    }
    if (event.stream !== undefined) {
      options.log.write(event.stream);
      const built = /Successfully built ([0-9a-f]+)/.exec(event.stream);
      if (built && imageId === undefined) imageId = built[1];
    }
    if (event.status !== undefined) {
      options.log.write(`${event.status}${event.progress ? ` ${event.progress}` : ''}\n`);
    }
    if (event.aux?.ID !== undefined) imageId = event.aux.ID;
    if (event.error !== undefined) {
      failure = event.errorDetail?.message ?? event.error;
      options.log.write(`${failure}\n`);
    }
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(onLine);
    }
    onLine(partial);
  } catch (err) {
    if (options.signal.aborted) throw options.signal.reason as Error;
    failure ??= dockerMessage(err);
  }
  if (options.signal.aborted) throw options.signal.reason as Error;
  if (failure !== undefined) {
    throw new ImageBuildError(`could not build docker image '${name}': ${failure}`);
  }
  if (imageId === undefined) {
    throw new ImageBuildError(`could not build docker image '${name}': no image ID reported`);
  }
  return imageId;
}

export interface ContainerRunOptions {
  id: string;
  project: string;
  imageId: string;
  uid: string;
  dataDir: string;
  buildPath: string;
  mounts: Record<string, string>;
  log: LogHub;
  /** Aborting stops the container (10 s grace); the run still resolves with its exit code. */
  stop: AbortSignal;
  stopMessage: () => string;
}

export interface ContainerResult {
  exitCode: number;
  stderr: string;
  /** Whether `stop` fired before the container exited on its own (timeout or shutdown). */
  stopped: boolean;
}

/** Renames a container already holding `name` out of the way. */
async function clearName(docker: Docker, name: string): Promise<void> {
  const existing = docker.getContainer(name);
  try {
    await existing.inspect();
  } catch {
    return;
  }
  const suffix = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join(
    '',
  );
  await existing.rename({ name: `${name}-renamed-${suffix}` });
}

/** Runs the job's container to its exit and force-removes it. */
export async function runContainer(
  docker: Docker,
  options: ContainerRunOptions,
): Promise<ContainerResult> {
  const name = `mistry-${options.id}`;
  await clearName(docker, name);
  const binds = [`${options.dataDir}:/data`];
  for (const [host, target] of Object.entries(options.mounts)) binds.push(`${host}:${target}`);
  const container = await docker.createContainer({
    name,
    Image: options.imageId,
    User: options.uid,
    Tty: false,
    AttachStdout: true,
    AttachStderr: true,
    Labels: {
      [LABEL]: '1',
      [LABEL_PROJECT]: options.project,
      [LABEL_JOB]: options.id,
      [LABEL_BUILD_PATH]: options.buildPath,
    },
    HostConfig: { Binds: binds, NetworkMode: 'host' },
  });
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const stderrChunks: Buffer[] = [];
    let stderrBytes = 0;
    let truncated = false;
    const stdout = new Writable({
      write(chunk: Buffer, _enc, done) {
        options.log.write(chunk);
        done();
      },
    });
    const stderr = new Writable({
      write(chunk: Buffer, _enc, done) {
        options.log.write(chunk);
        if (stderrBytes < MAX_STDERR_BYTES) {
          const room = MAX_STDERR_BYTES - stderrBytes;
          stderrChunks.push(chunk.subarray(0, room));
          stderrBytes += Math.min(room, chunk.length);
          if (chunk.length > room) truncated = true;
        } else truncated = true;
        done();
      },
    });
    const drained = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    docker.modem.demuxStream(stream, stdout, stderr);
    // A stop requested before the container started is applied once it runs: stopping a created
    // container is a no-op, and the build would then run to its end.
    let started = false;
    let stopRequested = false;
    const stop = (): void => {
      container.stop({ t: 10 }).catch(() => undefined);
    };
    const onStop = (): void => {
      if (stopRequested) return;
      stopRequested = true;
      options.log.write(`${options.stopMessage()}\n`);
      if (started) stop();
    };
    if (options.stop.aborted) onStop();
    else options.stop.addEventListener('abort', onStop, { once: true });
    try {
      await container.start();
      started = true;
      if (stopRequested) stop();
      const waited = (await container.wait()) as { StatusCode?: number };
      // A stop that fires after the exit changes nothing: the build ended on its own.
      const stopped = stopRequested;
      options.stop.removeEventListener('abort', onStop);
      await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 2000))]);
      const inspected = await container.inspect().catch(() => undefined);
      const exitCode = inspected?.State.ExitCode ?? waited.StatusCode ?? -1;
      let text = Buffer.concat(stderrChunks).toString('utf8');
      if (truncated) text += '\n[mistry] stderr truncated\n';
      return { exitCode, stderr: text, stopped };
    } finally {
      options.stop.removeEventListener('abort', onStop);
    }
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}
