/**
 * The running scratchd (§3.11): start-up in the written order (lock, admin, recovery, sinks,
 * listener, ready), SIGHUP reload, graceful and forced shutdown.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startAdminServer, type AdminServer } from '../common/admin-server.js';
import { ExitCode, type CliIo, type Service } from '../common/component.js';
import { ConfigError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { closeServer, formatAddress, listen } from '../common/net.js';
import { VERSION } from '../common/version.js';
import { Collector } from './collector.js';
import { issueLines, type ScratchdConfig, type SinkConfig } from './config.js';
import { DeadLetter } from './dead-letter.js';
import { Dispatcher } from './dispatcher.js';
import { PublicServer } from './http.js';
import { Salts } from './identity.js';
import { TrustedProxies } from './ip.js';
import { releaseLock, takeLock } from './lock.js';
import { createMetrics, type Metrics } from './metrics.js';
import { recoverOpenFiles } from './sinks/file.js';
import { createSink, fileSinkRoot } from './sinks/index.js';
import { metaFromEnvelope } from './sinks/types.js';
import { Spool } from './spool.js';
import { TenantTable } from './tenants.js';
import { Wal } from './wal.js';

const MIB = 1024 * 1024;
/** The `route` label of scratchd_http_requests_total for the admin listener's paths (§6). */
const ADMIN_ROUTES: ReadonlyMap<string, string> = new Map([
  ['/healthz', 'healthz'],
  ['/readyz', 'readyz'],
  ['/metrics', 'metrics'],
]);

export interface ServeOptions {
  config: ScratchdConfig;
  /** The file the config came from; undefined for the built-in config. */
  configPath: string | undefined;
  /** Re-reads and checks the config file (SIGHUP). */
  reloadConfig: () => Promise<ScratchdConfig>;
  io: CliIo;
  logger: Logger;
}

const RESTART_KEYS = [
  'listen',
  'admin_listen',
  'data_dir',
  'instance',
  'memory_budget_mb',
  'spool',
  'wal',
] as const;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Waits for `work` but at most `ms`; the timer is cleared either way, so nothing lingers. */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    await Promise.race([work.then(() => undefined), limit]);
  } finally {
    clearTimeout(timer);
  }
}

export class Scratchd implements Service {
  readonly done: Promise<number>;
  readonly shutdownTimeoutMs: number;
  private startLine: Record<string, unknown> = {};
  private config: ScratchdConfig;
  private tenants: TenantTable;
  private proxies: TrustedProxies;
  private readonly dispatchers = new Map<string, Dispatcher>();
  private readonly spools = new Map<string, Spool>();
  private readonly metrics: Metrics = createMetrics();
  private readonly log: Logger;
  private readonly wal: Wal;
  private readonly deadLetter: DeadLetter;
  private salts!: Salts;
  private admin: AdminServer | undefined;
  private publicServer: PublicServer | undefined;
  private recovered = false;
  private listening = false;
  private draining = false;
  private readonly fast = new AbortController();
  private housekeeping: NodeJS.Timeout | undefined;
  private lastRotations = 0;

  constructor(private readonly options: ServeOptions) {
    this.config = options.config;
    this.log = options.logger;
    const s = this.config.shutdown;
    this.shutdownTimeoutMs = s.pre_stop_ms + s.inflight_ms + s.drain_ms + 8000;
    this.tenants = new TenantTable(this.config, options.io.env);
    this.proxies = new TrustedProxies(this.config.trusted_proxies);
    this.wal = new Wal(
      join(this.config.data_dir, 'wal'),
      this.config.wal.segment_mb * MIB,
      this.config.wal.fsync_ms,
      (s) => this.metrics.walFsync.observe(s),
    );
    this.deadLetter = new DeadLetter(join(this.config.data_dir, 'dead'));
    // scratchd only ends on a signal: a failing sink spools instead of stopping the process.
    this.done = new Promise<number>(() => undefined);
  }

  get adminAddress(): string | undefined {
    return this.admin === undefined ? undefined : formatAddress(this.admin.address);
  }

  private shareBytes(): number {
    return (this.config.memory_budget_mb * MIB) / Math.max(1, this.dispatchers.size);
  }

  private get ready(): boolean {
    if (!this.recovered || !this.listening || this.draining) return false;
    for (const d of this.dispatchers.values()) if (d.spool.full) return false;
    return true;
  }

  async start(): Promise<void> {
    const config = this.config;
    mkdirSync(config.data_dir, { recursive: true });
    const stale = takeLock(config.data_dir);
    if (stale !== undefined) this.log.warn('took over a stale lock', { pid: stale });
    this.metrics.memoryBudget.set(config.memory_budget_mb * MIB);
    this.admin = await startAdminServer({
      host: config.admin_listen.host,
      port: config.admin_listen.port,
      registry: this.metrics.registry,
      logger: this.log,
      health: () => ({ healthy: true }),
      routes: { '/readyz': (req, res) => this.readyz(req, res) },
      observe: (path, status) =>
        this.metrics.httpRequests.inc({
          route: ADMIN_ROUTES.get(path) ?? 'other',
          code: String(status),
        }),
    });
    this.recover();
    this.replayWal();
    this.publicServer = new PublicServer({
      limits: config.limits,
      tenants: () => this.tenants,
      proxies: () => this.proxies,
      metrics: this.metrics,
      draining: () => this.draining,
      collector: new Collector({
        instance: () => this.config.instance,
        dispatchers: () => this.dispatchers,
        metrics: this.metrics,
        salts: () => this.salts,
        wal: this.wal,
      }),
    });
    const address = await listen(this.publicServer.server, config.listen.port, config.listen.host);
    this.listening = true;
    this.housekeeping = setInterval(() => this.tick(), 1000);
    this.housekeeping.unref();
    this.tick();
    this.startLine = {
      version: VERSION,
      listen: formatAddress(address),
      admin_listen: formatAddress(this.admin.address),
      config: this.options.configPath ?? '(built-in)',
      instance: config.instance,
      data_dir: config.data_dir,
      tenants: this.tenants.names().length,
      sinks: this.dispatchers.size,
    };
  }

  /** The start line; main.ts calls this once its signal handlers are on. */
  announce(): void {
    this.log.info('listening', this.startLine);
  }

  /** Step 4-5: file sinks' `.open` files, spools, salts; then sinks and dispatchers. */
  private recover(): void {
    const config = this.config;
    const report: Record<string, unknown> = {};
    for (const [name, sinkConfig] of Object.entries(config.sinks)) {
      if (sinkConfig.type === 'file')
        report[`${name}.open_files`] = recoverOpenFiles(fileSinkRoot(sinkConfig, config.data_dir));
      const spool = this.spoolFor(name, sinkConfig);
      const recovered = spool.recover();
      this.metrics.spoolCorrupt.inc({ sink: name }, recovered.corrupt);
      report[name] = recovered;
      this.startDispatcher(name, sinkConfig, spool);
    }
    const graceMs =
      Math.max(30, ...Object.values(config.tenants).map((t) => t.identity.session_idle_min)) *
      60_000;
    this.salts = Salts.inDir(config.data_dir, graceMs);
    this.lastRotations = this.salts.rotations;
    this.recovered = true;
    this.log.info('recovered', { spools: report });
  }

  private spoolFor(name: string, sinkConfig: SinkConfig): Spool {
    const spool = new Spool({
      dir: join(this.config.data_dir, 'spool', name),
      maxBytes: (sinkConfig.spool_max_mb ?? this.config.spool.max_mb) * MIB,
      segmentBytes: this.config.spool.segment_mb * MIB,
      fsyncMs: this.config.spool.fsync_ms,
    });
    this.spools.set(name, spool);
    return spool;
  }

  private startDispatcher(
    name: string,
    sinkConfig: SinkConfig,
    spool: Spool,
    start = true,
  ): Dispatcher {
    const sink = createSink(name, sinkConfig, {
      dataDir: this.config.data_dir,
      instance: this.config.instance,
      logger: this.log,
      stdout: this.options.io.stdout,
    });
    const dispatcher = new Dispatcher(
      sink,
      spool,
      sinkConfig,
      () => this.shareBytes(),
      this.deadLetter,
      this.metrics,
      this.log,
    );
    this.dispatchers.set(name, dispatcher);
    if (start) dispatcher.start();
    return dispatcher;
  }

  /** WAL events of the last run go to their tenant's current sinks before the listener opens. */
  private replayWal(): void {
    let events = 0;
    let orphans = 0;
    for (const { seq, records } of this.wal.recover()) {
      for (const data of records) {
        const meta = metaFromEnvelope(data);
        const tenant = this.tenants.get(meta.tenant);
        const targets = (tenant?.config.sinks ?? []).flatMap((n) => this.dispatchers.get(n) ?? []);
        if (targets.length === 0) {
          orphans += 1;
          continue;
        }
        const settle = this.wal.settleFor(seq, targets.length);
        for (const d of targets) if (!d.push({ data, meta, settle })) settle();
        events += 1;
      }
    }
    this.wal.sweep();
    if (events > 0 || orphans > 0)
      this.log.info('recovered', { wal_events: events, wal_orphans: orphans });
  }

  private readonly fullSpools = new Set<string>();

  private tick(): void {
    let memory = 0;
    for (const [name, d] of this.dispatchers) {
      if (d.spool.full !== this.fullSpools.has(name)) {
        if (d.spool.full) {
          this.fullSpools.add(name);
          this.log.error('spool_full', { sink: name, spool_bytes: d.spool.bytes });
        } else {
          this.fullSpools.delete(name);
          this.log.info('spool has room again', { sink: name, spool_bytes: d.spool.bytes });
        }
      }
      memory += d.memoryBytes;
      this.metrics.queueEvents.set({ sink: name }, d.queuedEvents);
      this.metrics.queueBytes.set({ sink: name }, d.memoryBytes);
      this.metrics.spoolBytes.set({ sink: name }, d.spool.bytes);
      this.metrics.spoolSegments.set({ sink: name }, d.spool.segmentCount);
      const corrupt = d.spool.corruptRecords;
      if (corrupt > 0) {
        d.spool.corruptRecords = 0;
        this.metrics.spoolCorrupt.inc({ sink: name }, corrupt);
      }
    }
    this.metrics.memoryUsed.set(memory);
    this.metrics.walBytes.set(this.wal.bytes);
    this.metrics.ready.set(this.ready ? 1 : 0);
    try {
      this.salts.rotate();
    } catch (err) {
      this.log.error('salt rotation failed', { err });
    }
    if (this.salts.rotations > this.lastRotations) {
      this.metrics.saltRotations.inc(this.salts.rotations - this.lastRotations);
      this.lastRotations = this.salts.rotations;
    }
  }

  private readyz(_req: IncomingMessage, res: ServerResponse): void {
    const sinks: Record<string, unknown> = {};
    for (const [name, d] of this.dispatchers) sinks[name] = d.snapshot();
    const ready = this.ready;
    const body = JSON.stringify({
      ready,
      draining: this.draining,
      starting: !this.listening,
      sinks,
    });
    res.writeHead(ready ? 200 : 503, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    });
    res.end(body);
  }

  /** SIGHUP (§3.11): the same file again; invalid keeps the old config. */
  async reload(): Promise<void> {
    let next: ScratchdConfig;
    try {
      next = await this.options.reloadConfig();
    } catch (err) {
      this.metrics.reloadErrors.inc();
      const problems = err instanceof ConfigError ? issueLines(err) : [(err as Error).message];
      this.log.error('config_reload_failed', { problems });
      return;
    }
    const old = this.config;
    const kept: string[] = [];
    for (const key of RESTART_KEYS) {
      if (JSON.stringify(next[key]) !== JSON.stringify(old[key])) {
        kept.push(key);
        (next as Record<string, unknown>)[key] = old[key];
      }
    }
    if (kept.length > 0) this.log.warn('restart required', { keys: kept });
    const stopping: Dispatcher[] = [];
    const starting: Dispatcher[] = [];
    for (const [name, d] of [...this.dispatchers]) {
      const now = next.sinks[name];
      if (now !== undefined && JSON.stringify(now) === JSON.stringify(old.sinks[name])) continue;
      this.dispatchers.delete(name);
      stopping.push(d);
      if (now !== undefined) starting.push(this.startDispatcher(name, now, d.spool, false));
    }
    for (const [name, sinkConfig] of Object.entries(next.sinks)) {
      if (!this.dispatchers.has(name)) {
        const spool = this.spoolFor(name, sinkConfig);
        this.metrics.spoolCorrupt.inc({ sink: name }, spool.recover().corrupt);
        this.startDispatcher(name, sinkConfig, spool);
      }
    }
    this.config = next;
    this.tenants = new TenantTable(next, this.options.io.env, this.tenants);
    this.proxies = new TrustedProxies(next.trusted_proxies);
    this.metrics.reloads.inc();
    this.log.info('config_reloaded', {
      tenants: this.tenants.names().length,
      sinks: this.dispatchers.size,
      swapped: stopping.map((d) => d.name),
    });
    // A changed or removed sink drains into its spool; its successor takes the spool over.
    for (const d of stopping) {
      await d.forceStop();
      await d.stopped();
      await d.sink
        .close()
        .catch((err: unknown) => this.log.warn('sink close failed', { sink: d.name, err }));
    }
    for (const d of starting) d.start();
  }

  private closing: Promise<number> | undefined;

  /** Graceful stop; idempotent, later callers share the promise. */
  close(reason: string): Promise<number> {
    this.closing ??= this.shutdown(reason);
    return this.closing;
  }

  private async shutdown(reason: string): Promise<number> {
    const s = this.config.shutdown;
    const started = Date.now();
    this.draining = true;
    this.metrics.ready.set(0);
    this.log.info('shutdown_begin', { reason, pre_stop_ms: s.pre_stop_ms });
    await sleep(s.pre_stop_ms, this.fast.signal);
    if (this.publicServer !== undefined) {
      const server = this.publicServer.server;
      const graceMs = this.fast.signal.aborted ? 0 : s.inflight_ms;
      await within(closeServer(server, graceMs), graceMs + 100);
      server.closeAllConnections();
    }
    const drainMs = this.fast.signal.aborted ? 0 : s.drain_ms;
    const spooled = await Promise.all([...this.dispatchers.values()].map((d) => d.drain(drainMs)));
    const total = spooled.reduce((a, b) => a + b, 0);
    let lost = 0;
    for (const d of this.dispatchers.values()) lost += d.unpersisted;
    for (const spool of this.spools.values()) await spool.close();
    const walLeft = await this.wal.close().catch(() => 0);
    await Promise.all(
      [...this.dispatchers.values()].map((d) =>
        within(d.sink.close(), 3000).catch((err: unknown) =>
          this.log.warn('sink close failed', { sink: d.name, err }),
        ),
      ),
    );
    this.finish();
    if (lost > 0) {
      this.log.error('shutdown_lost', { events: lost });
      return ExitCode.failure;
    }
    this.log.info('shutdown_done', {
      spooled: total,
      wal_unsettled: walLeft,
      durationMs: Date.now() - started,
    });
    return ExitCode.ok;
  }

  private finish(): void {
    if (this.housekeeping !== undefined) clearInterval(this.housekeeping);
    try {
      this.salts.persist();
    } catch (err) {
      this.log.error('salt persist failed', { err });
    }
    void this.admin?.close();
    releaseLock(this.config.data_dir);
  }

  /** Second signal or missed deadline: everything in memory is spooled synchronously, now. */
  destroy(): number {
    this.fast.abort();
    this.draining = true;
    let spooled = 0;
    let lost = 0;
    for (const d of this.dispatchers.values()) {
      const events = d.takeAllSync();
      try {
        spooled += d.spool.writeSync(events.map((e) => e.data));
      } catch (err) {
        lost += events.length;
        this.log.error('shutdown_lost', { sink: d.name, events: events.length, err });
      }
    }
    this.publicServer?.server.closeAllConnections();
    this.finish();
    if (lost > 0) return ExitCode.failure;
    this.log.info('shutdown_done', { spooled, forced: true });
    return ExitCode.ok;
  }

  /** Start-up failed after the lock was taken: release what was opened. */
  async abortStart(): Promise<void> {
    void this.destroy();
    await Promise.resolve();
  }
}
