/**
 * The build scheduler (spec §3.3): result cache, coalescing of identical in-flight requests,
 * the bounded FIFO queue, the worker that bootstraps, builds and runs a job, and finalisation.
 * Coalesced requests wait on the owner's outcome promise and hold no slot or backlog place.
 */
import type Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  NO_DURATION_NS,
  NO_EXIT_CODE,
  durationNs,
  formatRfc3339,
  jobUrl,
  type BuildInfo,
} from '../build-info.js';
import { computeJobId } from '../job-id.js';
import type { Logger } from '../../common/logger.js';
import type { ServerConfig } from './config.js';
import { BuildTimeoutError, ImageBuildError, buildImage, runContainer } from './docker-runner.js';
import type { FilesystemAdapter } from './filesystem.js';
import { FingerprintCache, type ProjectFile } from './fingerprint.js';
import { Layout, readBuildInfo, readLink, swapLink, writeBuildInfo } from './layout.js';
import { LogHub } from './log-hub.js';
import type { MistryMetrics } from './metrics.js';
import { JobIndex } from './job-index.js';

export interface JobRequest {
  project: string;
  group: string;
  params: Record<string, string> | null;
  rebuild: boolean;
}

/** What a finished build tells its owner and waiters. */
export type Outcome =
  | { ok: true; info: BuildInfo; stdouterr: string; stderr: string }
  | { ok: false; status: number; message: string };

export type JobState = 'queued' | 'pending';

export interface InFlightJob {
  readonly id: string;
  readonly project: string;
  readonly request: JobRequest;
  readonly startedAtMs: number;
  readonly files: ProjectFile[];
  state: JobState;
  hub: LogHub | undefined;
  readonly outcome: Promise<Outcome>;
  /** Subscribers to hub creation (streams attached while queued). */
  readonly hubWaiters: ((hub: LogHub) => void)[];
}

interface InternalJob extends InFlightJob {
  resolve(outcome: Outcome): void;
  timeout: AbortController;
  interrupt: AbortController;
}

export type Admission =
  | { kind: 'cached'; id: string; info: BuildInfo; stdouterr: string }
  | { kind: 'coalesced'; id: string; job: InFlightJob; startedAtMs: number }
  | { kind: 'queued'; id: string; job: InFlightJob }
  | { kind: 'rejected'; status: 503; body: string; reason: 'backlog_full' | 'shutting_down' };

export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

export class ProjectChangedError extends Error {
  override readonly name = 'ProjectChangedError';
}

type Stage = 'bootstrap' | 'image' | 'container' | 'finalise';

class StageError extends Error {
  constructor(
    readonly stage: Stage,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'StageError';
  }
}

export interface BuildManagerOptions {
  config: ServerConfig;
  docker: Docker;
  filesystem: FilesystemAdapter;
  logger: Logger;
  metrics: MistryMetrics;
  index: JobIndex;
  /** Called after a build finished, e.g. to run GC when the disk is full. */
  onFinished?: () => void;
}

const SMALL_LOG_BYTES = 64 * 1024;

export class BuildManager {
  readonly layout: Layout;
  private readonly inFlight = new Map<string, InternalJob>();
  private readonly queue: InternalJob[] = [];
  private readonly running = new Set<InternalJob>();
  private readonly projectLocks = new Map<string, Promise<unknown>>();
  private readonly fingerprints = new FingerprintCache();
  private readonly logCache = new Map<string, string>();
  /** Open readers per job ID (artifact streams and cache answers being made); GC skips them. */
  private readonly readers = new Map<string, number>();
  /** IDs GC is removing (§3.7); a request for one waits for the removal, then misses. */
  private readonly removals = new Map<string, Promise<void>>();
  private waiters = 0;
  private draining = false;
  private idleResolvers: (() => void)[] = [];

  constructor(private readonly options: BuildManagerOptions) {
    this.layout = new Layout(options.config.buildPath);
  }

  private get log(): Logger {
    return this.options.logger;
  }

  get queued(): number {
    return this.queue.length;
  }

  get busy(): number {
    return this.running.size;
  }

  inFlightJob(id: string): InFlightJob | undefined {
    return this.inFlight.get(id);
  }

  /** Counts a reader of ready build `id` until the returned function is called (once). */
  addReader(id: string): () => void {
    this.readers.set(id, (this.readers.get(id) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.readers.get(id) ?? 1) - 1;
      if (left <= 0) this.readers.delete(id);
      else this.readers.set(id, left);
    };
  }

  /** Whether GC holds `id` for removal right now. */
  beingRemoved(id: string): boolean {
    return this.removals.has(id);
  }

  /**
   * GC's claim on ready build `id` while it takes the build away: refused (undefined) while the
   * ID is in flight, read, or answered from the cache right now, or was answered within
   * `minIdleMs`. Until the returned release runs, requests for the ID wait; they then find no
   * cached build and build again. Check and claim happen in one synchronous step, so no request
   * can slip between them.
   */
  reserveForRemoval(id: string, dir: string, minIdleMs: number): (() => void) | undefined {
    if (this.inFlight.has(id) || this.readers.has(id) || this.removals.has(id)) return undefined;
    if (Date.now() - (this.touched.get(dir) ?? 0) < minIdleMs) return undefined;
    let release!: () => void;
    this.removals.set(id, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.removals.delete(id);
      release();
    };
  }

  /** Step 1 to 6 of §3.3: validation happened; fingerprint, then coalesce, cache or queue. */
  async admit(request: JobRequest): Promise<Admission> {
    if (this.draining)
      return {
        kind: 'rejected',
        status: 503,
        body: 'server is shutting down',
        reason: 'shutting_down',
      };
    const projectDir = join(this.options.config.projectsPath, request.project);
    const files = await this.projectFiles(request.project, projectDir);
    const id = computeJobId({ ...request, files });
    const startedAtMs = Date.now();
    const { metrics } = this.options;
    // GC is taking this build away: wait for it (a rename and an index entry), then it is a miss.
    await this.removals.get(id);
    const existing = this.inFlight.get(id);
    if (existing) {
      metrics.buildsStarted.inc({ project: request.project });
      return { kind: 'coalesced', id, job: existing, startedAtMs };
    }
    const cached = await this.cachedAnswer(request.project, id);
    if (cached) {
      metrics.buildsStarted.inc({ project: request.project });
      metrics.cacheUtilization.inc({ project: request.project });
      this.log.info('job cached', {
        project: request.project,
        id: id.slice(0, 7),
        group: request.group,
      });
      return { kind: 'cached', id, ...cached };
    }
    if (this.queue.length >= this.options.config.jobBacklog) {
      return { kind: 'rejected', status: 503, body: '', reason: 'backlog_full' };
    }
    metrics.buildsStarted.inc({ project: request.project });
    const job = this.register(id, request, files, startedAtMs);
    this.queue.push(job);
    metrics.queueDepth.set(this.queue.length);
    this.log.info('job queued', {
      project: request.project,
      id: id.slice(0, 7),
      group: request.group,
    });
    this.pump();
    return { kind: 'queued', id, job };
  }

  /** Waits for the owner; answers as a coalesced request with this request's own fields. */
  async waitCoalesced(
    admission: Extract<Admission, { kind: 'coalesced' }>,
    request: JobRequest,
  ): Promise<Outcome> {
    this.waiters++;
    this.options.metrics.coalescedWaiters.set(this.waiters);
    try {
      const outcome = await admission.job.outcome;
      this.options.metrics.buildsCoalesced.inc({ project: request.project });
      this.log.info('job coalesced', {
        project: request.project,
        id: admission.id.slice(0, 7),
        group: request.group,
      });
      if (!outcome.ok) return outcome;
      const info: BuildInfo = {
        ...this.baseInfo(request, admission.id, admission.startedAtMs),
        Coalesced: true,
        ExitCode: outcome.info.ExitCode,
        ErrBuild: outcome.info.ErrBuild,
      };
      return { ok: true, info, stdouterr: '', stderr: '' };
    } finally {
      this.waiters--;
      this.options.metrics.coalescedWaiters.set(this.waiters);
    }
  }

  private async projectFiles(project: string, projectDir: string): Promise<ProjectFile[]> {
    const unknown = (): RequestError =>
      new RequestError(500, `Error creating new job: Unknown project '${project}'`);
    let files: ProjectFile[];
    try {
      files = await this.fingerprints.scan(projectDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw unknown();
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw unknown();
      throw err;
    }
    if (!files.some((file) => file.path === 'Dockerfile')) throw unknown();
    return files;
  }

  private async cachedAnswer(
    project: string,
    id: string,
  ): Promise<{ info: BuildInfo; stdouterr: string } | undefined> {
    const entry = this.options.index.get(id);
    if (
      !entry ||
      entry.state !== 'ready' ||
      entry.buildInfo.ExitCode !== 0 ||
      entry.buildInfo.ErrBuild !== ''
    ) {
      return undefined;
    }
    const dir = this.layout.ready(project, id);
    try {
      // One stat per hit notices a ready dir removed by hand; sync, as it is a single cached inode.
      statSync(dir);
    } catch {
      // Removed by hand: forget it and build again.
      this.options.index.delete(id);
      this.logCache.delete(id);
      return undefined;
    }
    // A reader from here on, so GC cannot claim the build while its log is read; the touch that
    // follows then keeps it for min_idle_s.
    const release = this.addReader(id);
    try {
      let stdouterr = this.logCache.get(id);
      if (stdouterr === undefined) {
        stdouterr = await readFile(join(dir, 'out.log'), 'utf8').catch(() => '');
        if (stdouterr.length <= SMALL_LOG_BYTES) this.logCache.set(id, stdouterr);
      }
      this.touch(dir);
      return { info: { ...entry.buildInfo, Cached: true }, stdouterr };
    } finally {
      release();
    }
  }

  private readonly touched = new Map<string, number>();

  /**
   * Records a use of a ready build as its dir mtime (GC's "last use"). At most once a second per
   * build: GC works in seconds and hot cache hits should not each cost a write.
   */
  touch(dir: string): void {
    const now = Date.now();
    if (now - (this.touched.get(dir) ?? 0) < 1000) return;
    this.touched.set(dir, now);
    if (this.touched.size > 10_000) this.touched.clear();
    const date = new Date(now);
    utimes(dir, date, date).catch(() => undefined);
  }

  private register(
    id: string,
    request: JobRequest,
    files: ProjectFile[],
    startedAtMs: number,
  ): InternalJob {
    let resolve!: (outcome: Outcome) => void;
    const outcome = new Promise<Outcome>((r) => (resolve = r));
    const job: InternalJob = {
      id,
      project: request.project,
      request,
      startedAtMs,
      files,
      state: 'queued',
      hub: undefined,
      outcome,
      hubWaiters: [],
      resolve,
      timeout: new AbortController(),
      interrupt: new AbortController(),
    };
    this.inFlight.set(id, job);
    return job;
  }

  private pump(): void {
    while (
      !this.draining &&
      this.running.size < this.options.config.jobConcurrency &&
      this.queue.length > 0
    ) {
      const job = this.queue.shift() as InternalJob;
      this.options.metrics.queueDepth.set(this.queue.length);
      this.running.add(job);
      this.options.metrics.workersBusy.set(this.running.size);
      void this.execute(job).finally(() => {
        this.running.delete(job);
        this.options.metrics.workersBusy.set(this.running.size);
        if (this.running.size === 0) this.idleResolvers.splice(0).forEach((r) => r());
        this.pump();
      });
    }
  }

  private baseInfo(request: JobRequest, id: string, startedAtMs: number): BuildInfo {
    return {
      Params: request.params,
      Group: request.group,
      Path: this.layout.artifactsPath(request.project, id),
      Cached: false,
      Coalesced: false,
      Incremental: false,
      ExitCode: NO_EXIT_CODE,
      ErrBuild: '',
      TransportMethod: 'rsync',
      StartedAt: formatRfc3339(startedAtMs),
      Duration: NO_DURATION_NS,
      URL: jobUrl(request.project, id),
    };
  }

  private timeoutFor(project: string): number {
    return this.options.config.projectTimeoutsS[project] ?? this.options.config.buildTimeoutS;
  }

  /** Steps 7 and 8: one worker run, always ending with the registry entry dropped. */
  private async execute(job: InternalJob): Promise<void> {
    const workerStart = Date.now();
    const { project, group } = job.request;
    const short = job.id.slice(0, 7);
    const info = this.baseInfo(job.request, job.id, job.startedAtMs);
    const timeoutS = this.timeoutFor(project);
    const timer =
      timeoutS > 0
        ? setTimeout(
            () => job.timeout.abort(new BuildTimeoutError(`build timed out after ${timeoutS}s`)),
            timeoutS * 1000,
          )
        : undefined;
    let outcome: Outcome = { ok: false, status: 500, message: 'internal error' };
    let stderr = '';
    try {
      this.log.info('job start', { project, id: short, group });
      const pendingDir = this.layout.pending(project, job.id);
      try {
        await this.bootstrap(job, info);
      } catch (err) {
        await this.options.filesystem.remove(pendingDir).catch(() => undefined);
        throw new StageError('bootstrap', err);
      }
      const hub = job.hub as LogHub;
      let imageId: string;
      const imageStart = Date.now();
      try {
        await this.checkUnchanged(job);
        imageId = await buildImage(this.options.docker, {
          project,
          files: job.files,
          uid: this.options.config.uid,
          rebuild: job.request.rebuild,
          log: hub,
          signal: AbortSignal.any([job.timeout.signal, job.interrupt.signal]),
        });
      } catch (err) {
        let error = err;
        if (err instanceof BuildTimeoutError) {
          error = new Error(`${err.message} (image build)`);
          this.options.metrics.buildTimeouts.inc({ project });
        }
        const message = error instanceof Error ? error.message : String(error);
        if (!(err instanceof ImageBuildError)) hub.write(`${message}\n`);
        throw new StageError('image', error);
      } finally {
        this.options.metrics.imageBuildSeconds.observe(
          { project },
          (Date.now() - imageStart) / 1000,
        );
      }
      if (job.interrupt.signal.aborted)
        throw new StageError('container', job.interrupt.signal.reason);
      let result;
      try {
        result = await runContainer(this.options.docker, {
          id: job.id,
          project,
          imageId,
          uid: this.options.config.uid,
          dataDir: join(pendingDir, 'data'),
          buildPath: this.options.config.buildPath,
          mounts: this.options.config.mounts,
          log: hub,
          stop: AbortSignal.any([job.timeout.signal, job.interrupt.signal]),
          stopMessage: () =>
            job.interrupt.signal.aborted
              ? '[mistry] interrupted: server shutting down; container stopped'
              : `[mistry] build timed out after ${timeoutS}s; container stopped`,
        });
      } catch (err) {
        throw new StageError('container', err);
      }
      stderr = result.stderr;
      info.ExitCode = result.exitCode;
      this.options.metrics.buildsFinished.inc({ project });
      if (result.stopped && job.interrupt.signal.aborted) {
        throw new StageError('container', job.interrupt.signal.reason);
      }
      if (result.stopped && job.timeout.signal.aborted) {
        info.ErrBuild = `build timed out after ${timeoutS}s`;
        this.options.metrics.buildTimeouts.inc({ project });
      }
      info.Duration = durationNs(Date.now() - workerStart);
      outcome = await this.finalise(job, info, stderr);
    } catch (err) {
      outcome = await this.fail(job, info, err).catch((failErr: unknown) => {
        this.log.error('could not record a failed build', { project, id: short, err: failErr });
        return { ok: false as const, status: 500, message: String(err) };
      });
    } finally {
      // Released on every path: a stuck registry entry would wedge this ID until restart.
      if (timer) clearTimeout(timer);
      this.inFlight.delete(job.id);
      job.hub?.close();
      job.resolve(outcome);
    }
    this.options.onFinished?.();
  }

  private async fail(job: InternalJob, info: BuildInfo, err: unknown): Promise<Outcome> {
    const stage: Stage = err instanceof StageError ? err.stage : 'finalise';
    const cause = err instanceof StageError ? err.cause : err;
    const interrupted = job.interrupt.signal.aborted;
    const text = interrupted
      ? 'interrupted: server shutting down'
      : cause instanceof Error
        ? cause.message
        : String(cause);
    const { project, group } = job.request;
    const message = `Error building {project=${project} group=${group} id=${job.id.slice(0, 7)}}: ${text}`;
    this.log.error(message, { project, id: job.id.slice(0, 7), stage });
    if (interrupted) this.options.metrics.buildsInterrupted.inc({ project, reason: 'shutdown' });
    else this.options.metrics.buildErrors.inc({ project, stage });
    info.ErrBuild = text;
    info.Duration = NO_DURATION_NS;
    if (stage !== 'bootstrap') {
      if (interrupted) job.hub?.write(`[mistry] ${text}\n`);
      try {
        await this.moveToReady(job, info);
      } catch (finaliseErr) {
        this.log.error('could not keep the failed build', {
          project,
          id: job.id.slice(0, 7),
          err: finaliseErr,
        });
      }
    }
    return { ok: false, status: 500, message };
  }

  private async bootstrap(job: InternalJob, info: BuildInfo): Promise<void> {
    const { project, group } = job.request;
    const pendingDir = this.layout.pending(project, job.id);
    const readyDir = this.layout.ready(project, job.id);
    const fs = this.options.filesystem;
    let source: string | undefined;
    await this.withProjectLock(project, async () => {
      await mkdir(this.layout.pending(project), { recursive: true, mode: 0o755 });
      await mkdir(this.layout.ready(project), { recursive: true, mode: 0o755 });
      if (group !== '') {
        await mkdir(this.layout.groups(project), { recursive: true, mode: 0o755 });
        source = await this.cloneSource(project, group, job.id);
      }
    });
    // A failed ready/<id> is rebuilt; a stale pending/<id> has no owner (we hold the ID).
    await fs.remove(readyDir);
    this.options.index.delete(job.id);
    this.logCache.delete(job.id);
    await fs.remove(pendingDir);
    const setupStart = Date.now();
    if (source !== undefined) {
      await fs.clone(source, pendingDir);
      await rm(join(pendingDir, 'out.log'), { force: true });
      await rm(join(pendingDir, 'build_info.json'), { force: true });
      await rm(join(pendingDir, 'data', 'params'), { recursive: true, force: true });
      info.Incremental = true;
    } else {
      await fs.create(pendingDir);
    }
    for (const sub of ['cache', 'artifacts', 'params']) {
      await mkdir(join(pendingDir, 'data', sub), { recursive: true, mode: 0o755 });
    }
    this.options.metrics.setupSeconds.observe(
      { project, filesystem: fs.kind, incremental: String(info.Incremental) },
      (Date.now() - setupStart) / 1000,
    );
    await writeBuildInfo(pendingDir, info);
    for (const [key, value] of Object.entries(job.request.params ?? {})) {
      await writeFile(join(pendingDir, 'data', 'params', key), value, { mode: 0o644 });
    }
    const hub = new LogHub(join(pendingDir, 'out.log'));
    hub.start();
    job.hub = hub;
    job.state = 'pending';
    this.options.index.set({
      id: job.id,
      project,
      buildInfo: { ...info },
      state: 'pending',
    });
    job.hubWaiters.splice(0).forEach((notify) => notify(hub));
  }

  /** The group's last good build, or undefined (logged) when the link is missing or bad. */
  private async cloneSource(
    project: string,
    group: string,
    id: string,
  ): Promise<string | undefined> {
    const link = this.layout.groupLink(project, group);
    const target = await readLink(link);
    if (target === undefined) return undefined;
    try {
      if (!target.startsWith(`${this.layout.ready(project)}/`))
        throw new Error('not a ready build');
      const stored = await readBuildInfo(target);
      if (stored.ExitCode !== 0 || stored.ErrBuild !== '')
        throw new Error('not a successful build');
      return target;
    } catch (err) {
      this.log.warn('group link unusable, building from scratch', {
        project,
        group,
        id: id.slice(0, 7),
        target,
        reason: err instanceof Error ? err.message : String(err),
      });
      await rm(link, { force: true });
      return undefined;
    }
  }

  private async checkUnchanged(job: InternalJob): Promise<void> {
    const projectDir = join(this.options.config.projectsPath, job.project);
    const files = await this.fingerprints.scan(projectDir);
    const id = computeJobId({ ...job.request, files });
    if (id !== job.id) {
      throw new ProjectChangedError(
        `project '${job.project}' changed while the job was queued; retry`,
      );
    }
  }

  private async moveToReady(job: InternalJob, info: BuildInfo): Promise<void> {
    const { project } = job.request;
    const pendingDir = this.layout.pending(project, job.id);
    const readyDir = this.layout.ready(project, job.id);
    job.hub?.close();
    await writeBuildInfo(pendingDir, info);
    await this.options.filesystem.remove(readyDir);
    await rename(pendingDir, readyDir);
    this.options.index.set({ id: job.id, project, buildInfo: { ...info }, state: 'ready' });
    this.options.metrics.buildsHosted.set({ project }, this.options.index.countReady(project));
  }

  private async finalise(job: InternalJob, info: BuildInfo, stderr: string): Promise<Outcome> {
    const { project, group } = job.request;
    try {
      await this.moveToReady(job, info);
      const readyDir = this.layout.ready(project, job.id);
      if (info.ExitCode === 0 && info.ErrBuild === '') {
        await this.withProjectLock(project, () =>
          swapLink(this.layout.groupLink(project, group), readyDir),
        );
        if (info.Incremental) this.options.metrics.buildsIncremental.inc({ project });
      }
    } catch (err) {
      throw new StageError('finalise', err);
    }
    const seconds = info.Duration / 1e9;
    if (info.ExitCode === 0) this.options.metrics.succeededSeconds.observe({ project }, seconds);
    else this.options.metrics.failedSeconds.observe({ project }, seconds);
    const stdouterr = await readFile(
      join(this.layout.ready(project, job.id), 'out.log'),
      'utf8',
    ).catch(() => '');
    this.log.info('job done', {
      project,
      id: job.id.slice(0, 7),
      group,
      exit: info.ExitCode,
      duration_ms: Math.round(info.Duration / 1e6),
    });
    return { ok: true, info, stdouterr, stderr };
  }

  private async withProjectLock<T>(project: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.projectLocks.get(project) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.projectLocks.set(project, settled);
    try {
      return await run;
    } finally {
      if (this.projectLocks.get(project) === settled) this.projectLocks.delete(project);
    }
  }

  /** Stops admitting; queued jobs are answered 503 and dropped. */
  startDraining(): void {
    this.draining = true;
    for (const job of this.queue.splice(0)) {
      this.inFlight.delete(job.id);
      this.log.warn('queued job dropped at shutdown', {
        project: job.project,
        id: job.id.slice(0, 7),
      });
      job.resolve({ ok: false, status: 503, message: 'server is shutting down' });
    }
    this.options.metrics.queueDepth.set(0);
  }

  /** Resolves when no build runs, or after `ms`. */
  async waitIdle(ms: number): Promise<boolean> {
    if (this.running.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleResolvers.push(() => resolve(true)));
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const result = await Promise.race([idle, late]);
    clearTimeout(timer);
    return result;
  }

  /** Stops every running container; their jobs finish as interrupted. */
  interruptAll(): void {
    for (const job of this.running)
      job.interrupt.abort(new Error('interrupted: server shutting down'));
  }

  /** A fresh random suffix, for temp names. */
  static suffix(): string {
    return randomBytes(16).toString('hex');
  }
}
