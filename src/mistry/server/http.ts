/**
 * The HTTP API (spec §2.1, §3.6): `POST /jobs` in its sync, async and streaming forms, the job
 * index and pages, the live log over Server-Sent Events, `artifacts.tar`, metrics, health and the
 * bundled web UI. Paths, status codes and bodies follow the original server.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { orderedBuildInfo, type BuildInfo } from '../build-info.js';
import { JOB_ID_PATTERN } from '../job-id.js';
import type { Logger } from '../../common/logger.js';
import { TarDestinationClosedError, walkTree, writeTar } from '../tar.js';
import {
  RequestError,
  type Admission,
  type BuildManager,
  type JobRequest,
  type Outcome,
} from './builds.js';
import type { JobIndex } from './job-index.js';
import { BodyError, decodeJobBody, validateJob } from './job-request.js';
import type { LogHub, LogSubscriber } from './log-hub.js';
import type { MistryMetrics } from './metrics.js';
import { renderAsset } from './ui.js';

export const KEEPALIVE_MS = 15_000;

export interface HttpOptions {
  builds: BuildManager;
  index: JobIndex;
  registry: Registry;
  metrics: MistryMetrics;
  logger: Logger;
  maxBodyBytes: number;
  tokens: readonly string[];
  health: () => { status: number; body: Record<string, string | undefined> };
  isDraining: () => boolean;
  keepaliveMs?: number;
}

type Route = 'jobs' | 'index' | 'job' | 'log' | 'artifacts' | 'metrics' | 'static' | 'healthz';

function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  const body = text === '' ? '' : text.endsWith('\n') ? text : `${text}\n`;
  res.writeHead(status, {
    ...(body === '' ? {} : { 'Content-Type': 'text/plain; charset=utf-8' }),
    'Content-Length': String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}

function wantsJson(req: IncomingMessage): boolean {
  const type = req.headers['content-type'] ?? '';
  const accept = req.headers.accept ?? '';
  return type.includes('application/json') || accept.includes('application/json');
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new BodyTooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function makeAuthorizer(tokens: readonly string[]): (req: IncomingMessage) => boolean {
  const digests = tokens.map(digest);
  return (req) => {
    if (digests.length === 0) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return false;
    const given = digest((match[1] ?? '').trim());
    let ok = false;
    for (const expected of digests) ok = timingSafeEqual(given, expected) || ok;
    return ok;
  };
}

/** The two path segments after a prefix (`/job/<p>/<id>`), or undefined for any other shape. */
function jobPath(path: string, prefix: string): { project: string; id: string } | undefined {
  const rest = path.slice(prefix.length).split('/');
  if (rest.length !== 2 || rest[0] === '' || rest[1] === '') return undefined;
  return {
    project: decodeURIComponent(rest[0]),
    id: decodeURIComponent(rest[1]),
  };
}

export class MistryHttp {
  readonly server: Server;
  private readonly authorized: (req: IncomingMessage) => boolean;
  private readonly streams = new Set<ServerResponse>();

  constructor(private readonly options: HttpOptions) {
    this.authorized = makeAuthorizer(options.tokens);
    this.server = createServer(
      { headersTimeout: 60_000, requestTimeout: 0, keepAlive: true },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          options.logger.error('request failed', { err, path: req.url });
          if (!res.headersSent) sendText(res, 500, (err as Error).message ?? 'internal error');
          else res.destroy();
        });
      },
    );
    this.server.keepAliveTimeout = 65_000;
  }

  /** Ends every open log stream (shutdown). */
  endStreams(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  private count(res: ServerResponse, route: Route): void {
    res.once('finish', () =>
      this.options.metrics.httpRequests.inc({ route, code: String(res.statusCode) }),
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mistry');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/jobs') {
      this.count(res, 'jobs');
      if (method !== 'POST') return sendText(res, 405, `Expected POST, got ${method}`);
      return this.postJob(req, res, url);
    }
    if (path.startsWith('/jobs/') && path.endsWith('/artifacts.tar')) {
      this.count(res, 'artifacts');
      if (method !== 'GET') return sendText(res, 405, `Expected GET, got ${method}`);
      return this.artifacts(req, res, path.slice(0, -'/artifacts.tar'.length));
    }
    if (path === '/index' || path.startsWith('/index/')) {
      this.count(res, 'index');
      if (method !== 'GET') return sendText(res, 405, `Expected GET, got ${method}`);
      const limit = Number(url.searchParams.get('limit'));
      return sendJson(
        res,
        200,
        this.options.index.list(Number.isInteger(limit) && limit > 0 ? limit : Infinity),
      );
    }
    if (path.startsWith('/job/')) {
      this.count(res, 'job');
      if (method !== 'GET') return sendText(res, 405, `Expected GET, got ${method}`);
      return this.jobPage(req, res, path);
    }
    if (path.startsWith('/log/')) {
      this.count(res, 'log');
      if (method !== 'GET') return sendText(res, 405, `Expected GET, got ${method}`);
      return this.logStream(req, res, path, url);
    }
    if (path === '/metrics') {
      this.count(res, 'metrics');
      const text = await this.options.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.options.registry.contentType });
      res.end(text);
      return;
    }
    if (path === '/healthz') {
      this.count(res, 'healthz');
      const report = this.options.health();
      return sendJson(res, report.status, report.body);
    }
    this.count(res, 'static');
    if (method !== 'GET' && method !== 'HEAD')
      return sendText(res, 405, `Expected GET, got ${method}`);
    const asset = renderAsset(path);
    if (!asset) return sendText(res, 404, '404 page not found');
    res.writeHead(200, {
      'Content-Type': asset.type,
      'Content-Length': String(Buffer.byteLength(asset.body)),
    });
    res.end(asset.body);
  }

  private async postJob(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { metrics } = this.options;
    if (!this.authorized(req)) {
      metrics.requestsRejected.inc({ reason: 'unauthorized' });
      return sendText(res, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer realm="mistry"' });
    }
    if (this.options.isDraining()) {
      metrics.requestsRejected.inc({ reason: 'shutting_down' });
      return sendText(res, 503, 'server is shutting down');
    }
    let raw: string;
    try {
      raw = await readBody(req, this.options.maxBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge)
        return sendText(res, 413, 'Request body too large', { Connection: 'close' });
      return sendText(res, 400, `Error reading request body: ${(err as Error).message}`);
    }
    let request: JobRequest;
    try {
      request = decodeJobBody(raw);
    } catch (err) {
      metrics.requestsRejected.inc({ reason: 'invalid' });
      const reason = err instanceof BodyError ? err.message : String(err);
      return sendText(res, 400, `Error unmarshalling body '${raw}' to Job: ${reason}`);
    }
    const invalid = validateJob(request);
    if (invalid !== undefined) {
      metrics.requestsRejected.inc({ reason: 'invalid' });
      return sendText(res, 400, invalid);
    }
    let admission: Admission;
    try {
      admission = await this.options.builds.admit(request);
    } catch (err) {
      if (err instanceof RequestError) return sendText(res, err.status, err.message);
      throw err;
    }
    if (admission.kind === 'rejected') {
      metrics.requestsRejected.inc({ reason: admission.reason });
      return sendText(res, admission.status, admission.body);
    }
    const mode =
      url.searchParams.has('stream') && url.searchParams.get('stream') !== '0'
        ? 'stream'
        : url.searchParams.has('async')
          ? 'async'
          : 'sync';
    if (mode === 'async') return this.asyncAnswer(req, res, request, admission);
    if (mode === 'stream') return this.streamAnswer(res, request, admission);
    const outcome = await this.outcomeOf(request, admission);
    this.sendOutcome(res, outcome, admission.kind === 'queued');
  }

  private asyncAnswer(
    req: IncomingMessage,
    res: ServerResponse,
    request: JobRequest,
    admission: Exclude<Admission, { kind: 'rejected' }>,
  ): void {
    // Waiters still count as coalesced when they finish; the async client does not see it.
    if (admission.kind === 'coalesced') void this.options.builds.waitCoalesced(admission, request);
    const url = `job/${request.project}/${admission.id}`;
    if ((req.headers.accept ?? '').includes('application/json')) {
      return sendJson(res, 201, {
        id: admission.id,
        project: request.project,
        url,
        state: this.stateOf(admission),
      });
    }
    res.writeHead(201, { 'Content-Length': '0' });
    res.end();
  }

  private stateOf(admission: Exclude<Admission, { kind: 'rejected' }>): string {
    if (admission.kind === 'cached') return 'ready';
    return admission.job.state;
  }

  private async outcomeOf(
    request: JobRequest,
    admission: Exclude<Admission, { kind: 'rejected' }>,
  ): Promise<Outcome> {
    if (admission.kind === 'cached')
      return { ok: true, info: admission.info, stdouterr: admission.stdouterr, stderr: '' };
    if (admission.kind === 'coalesced')
      return this.options.builds.waitCoalesced(admission, request);
    return admission.job.outcome;
  }

  private sendOutcome(res: ServerResponse, outcome: Outcome, owner: boolean): void {
    if (!outcome.ok) return sendText(res, outcome.status, outcome.message);
    const info: BuildInfo = { ...outcome.info, ContainerStdouterr: outcome.stdouterr };
    if (owner) info.ContainerStderr = outcome.stderr;
    sendJson(res, 201, orderedBuildInfo(info));
  }

  private streamAnswer(
    res: ServerResponse,
    request: JobRequest,
    admission: Exclude<Admission, { kind: 'rejected' }>,
  ): void {
    res.writeHead(201, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-cache' });
    const line = (value: unknown): boolean => res.write(`${JSON.stringify(value)}\n`);
    line({
      type: 'job',
      id: admission.id,
      project: request.project,
      url: `job/${request.project}/${admission.id}`,
      state: this.stateOf(admission),
      cached: admission.kind === 'cached',
      coalesced: admission.kind === 'coalesced',
    });
    let last = Date.now();
    const heartbeat = setInterval(
      () => {
        if (Date.now() - last >= (this.options.keepaliveMs ?? KEEPALIVE_MS)) {
          line({ type: 'heartbeat' });
          last = Date.now();
        }
      },
      Math.min(1000, this.options.keepaliveMs ?? KEEPALIVE_MS),
    );
    let unsubscribe: (() => void) | undefined;
    this.options.metrics.logSubscribers.inc();
    const finish = (outcome: Outcome): void => {
      clearInterval(heartbeat);
      unsubscribe?.();
      this.options.metrics.logSubscribers.dec();
      if (outcome.ok)
        line({
          type: 'result',
          status: 201,
          buildInfo: orderedBuildInfo({
            ...outcome.info,
            ContainerStderr: admission.kind === 'queued' ? outcome.stderr : '',
          }),
        });
      else line({ type: 'error', status: outcome.status, message: outcome.message });
      res.end();
    };
    if (admission.kind !== 'cached') {
      const subscriber: LogSubscriber = {
        chunk: (chunk, offset) => {
          last = Date.now();
          line({ type: 'log', offset: offset - chunk.length, data: chunk.toString('utf8') });
        },
        end: () => undefined,
      };
      const attach = (hub: LogHub): void => {
        void hub.subscribe(subscriber, 0).then((off) => {
          unsubscribe = off;
        });
      };
      if (admission.job.hub) attach(admission.job.hub);
      else admission.job.hubWaiters.push(attach);
    }
    void this.outcomeOf(request, admission).then(finish);
  }

  private async artifacts(
    req: IncomingMessage,
    res: ServerResponse,
    prefix: string,
  ): Promise<void> {
    if (!this.authorized(req)) {
      this.options.metrics.requestsRejected.inc({ reason: 'unauthorized' });
      return sendText(res, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer realm="mistry"' });
    }
    const where = jobPath(prefix, '/jobs/');
    if (!where) return sendText(res, 400, '');
    const entry = this.options.index.get(where.id);
    if (!entry || entry.project !== where.project || entry.state !== 'ready')
      return sendText(res, 404, 'Unknown job');
    const { builds } = this.options;
    const dir = builds.layout.ready(where.project, where.id);
    const artifactsDir = join(dir, 'data', 'artifacts');
    // A reader before the stat, so GC cannot claim the build in between; a build GC already holds
    // is on its way out and answers as gone.
    const stopReading = builds.addReader(where.id);
    if (builds.beingRemoved(where.id) || !(await stat(artifactsDir).catch(() => undefined))) {
      stopReading();
      return sendText(res, 404, 'Unknown job');
    }
    const release = (): void => {
      stopReading();
      builds.touch(dir);
    };
    // A client gone during the stat has had its 'close' already; the reader must not outlive it,
    // or GC would keep the build for ever.
    if (res.closed) return release();
    res.once('close', release);
    res.writeHead(200, { 'Content-Type': 'application/x-tar' });
    const counted = (chunk: Buffer): void =>
      this.options.metrics.artifactBytes.inc({ project: where.project }, chunk.length);
    writeTar(walkTree(artifactsDir), res, counted).catch((err: unknown) => {
      // A client that went away mid-download is no failure of ours.
      if (!(err instanceof TarDestinationClosedError)) {
        this.options.logger.error('artifact stream failed', {
          project: where.project,
          id: where.id,
          err,
        });
      }
      res.destroy(err as Error);
    });
  }

  private async jobPage(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const where = jobPath(path, '/job/');
    if (!where) return sendText(res, 400, '');
    const entry = this.options.index.get(where.id);
    const queued = this.options.builds.inFlightJob(where.id)?.project === where.project;
    if (!wantsJson(req) && (entry?.project === where.project || queued)) {
      const asset = renderAsset('/job.html');
      if (!asset) return sendText(res, 404, 'Unknown job');
      res.writeHead(200, { 'Content-Type': asset.type });
      res.end(asset.body);
      return;
    }
    if (!entry || entry.project !== where.project) return sendText(res, 404, 'Unknown job');
    const base =
      entry.state === 'ready'
        ? this.options.builds.layout.ready(where.project, where.id)
        : this.options.builds.layout.pending(where.project, where.id);
    const log = await readFile(join(base, 'out.log'), 'utf8').catch(() => '');
    sendJson(res, 200, {
      ID: entry.id,
      Project: entry.project,
      Params: entry.buildInfo.Params,
      Group: entry.buildInfo.Group,
      StartedAt: entry.buildInfo.StartedAt,
      BuildInfo: orderedBuildInfo({ ...entry.buildInfo, ContainerStdouterr: log }),
      State: entry.state,
    });
  }

  private logStream(req: IncomingMessage, res: ServerResponse, path: string, url: URL): void {
    const where = jobPath(path, '/log/');
    if (!where) return sendText(res, 400, '');
    const entry = this.options.index.get(where.id);
    const job = this.options.builds.inFlightJob(where.id);
    const known = entry?.project === where.project || job?.project === where.project;
    if (!known || !JOB_ID_PATTERN.test(where.id)) return sendText(res, 404, 'Unknown job');
    // Queued, finished or finishing: nothing to follow.
    if (!job?.hub || job.hub.finished || job.project !== where.project) {
      return sendText(res, 204, '');
    }
    const hub = job.hub;
    const fromHeader = req.headers['last-event-id'];
    const fromRaw =
      url.searchParams.get('from') ?? (typeof fromHeader === 'string' ? fromHeader : undefined);
    const fromParsed = fromRaw === undefined ? NaN : Number(fromRaw);
    const from = Number.isInteger(fromParsed) && fromParsed >= 0 ? fromParsed : hub.offset;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'Access-Control-Allow-Origin': '*',
    });
    res.flushHeaders();
    this.streams.add(res);
    this.options.metrics.logSubscribers.inc();
    let partial = '';
    let partialStart = from;
    let queued = 0;
    const keepalive = setInterval(
      () => res.write(': keepalive\n\n'),
      this.options.keepaliveMs ?? KEEPALIVE_MS,
    );
    let closed = false;
    let unsubscribe: (() => void) | undefined;
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      unsubscribe?.();
      this.streams.delete(res);
      this.options.metrics.logSubscribers.dec();
    };
    res.once('close', close);
    const subscriber: LogSubscriber = {
      chunk: (chunk, offset) => {
        if (closed) return;
        const text = partial + chunk.toString('utf8');
        const start = partialStart;
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        let position = start;
        let out = '';
        for (const line of lines) {
          position += Buffer.byteLength(line) + 1;
          out += `id: ${position}\ndata: ${line.replace(/\r/g, '')}\n\n`;
        }
        partialStart = offset - Buffer.byteLength(partial);
        if (out === '') return;
        queued += out.length;
        if (!res.write(out)) {
          if (queued > 1024 * 1024) {
            res.destroy();
            return;
          }
          res.once('drain', () => (queued = 0));
        } else queued = 0;
      },
      end: () => {
        if (closed) return;
        if (partial !== '') {
          const end = partialStart + Buffer.byteLength(partial);
          res.write(`id: ${end}\ndata: ${partial.replace(/\r/g, '')}\n\n`);
          partial = '';
        }
        void job.outcome.then((outcome) => {
          if (closed) return;
          const exitCode = outcome.ok ? outcome.info.ExitCode : -999;
          res.write(`event: end\ndata: ${JSON.stringify({ state: 'ready', exitCode })}\n\n`);
          res.end();
          close();
        });
      },
    };
    void hub.subscribe(subscriber, from).then((off) => {
      if (closed) off();
      else unsubscribe = off;
    });
  }
}
