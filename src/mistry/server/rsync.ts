/**
 * The optional rsync daemon (spec §3.8): a private rsyncd.conf exporting `build_path` as the
 * read-only module `mistry`, and `rsync --daemon --no-detach` as a supervised child restarted with
 * backoff (1 s doubling to 30 s) and stopped at shutdown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { ServerConfig } from './config.js';
import type { MistryMetrics } from './metrics.js';

const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;

export function rsyncdConf(config: ServerConfig): string {
  const lines = [
    `pid file = `,
    `[mistry]`,
    `path = ${config.buildPath}`,
    `read only = yes`,
    `use chroot = no`,
    `munge symlinks = no`,
    `list = no`,
    `uid = ${process.getuid?.() ?? 0}`,
    `gid = ${process.getgid?.() ?? 0}`,
  ];
  if (config.rsync.hostsAllow !== '') lines.push(`hosts allow = ${config.rsync.hostsAllow}`);
  if (config.rsync.maxConnections > 0)
    lines.push(`max connections = ${config.rsync.maxConnections}`);
  return `${lines.join('\n')}\n`;
}

export class RsyncDaemon {
  private child: ChildProcess | undefined;
  private dir: string | undefined;
  private stopped = false;
  private backoffMs = MIN_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: ServerConfig,
    private readonly logger: Logger,
    private readonly metrics: MistryMetrics,
  ) {}

  get state(): 'up' | 'down' | 'off' {
    if (!this.config.rsync.enabled) return 'off';
    return this.child && this.child.exitCode === null ? 'up' : 'down';
  }

  start(): void {
    if (!this.config.rsync.enabled) return;
    void this.launch();
  }

  private async launch(): Promise<void> {
    if (this.stopped) return;
    try {
      this.dir ??= await mkdtemp(join(tmpdir(), 'mistry-rsyncd-'));
      const confPath = join(this.dir, 'rsyncd.conf');
      await writeFile(confPath, rsyncdConf(this.config), { mode: 0o600 });
      const { address, port } = this.config.rsync;
      const child = spawn(
        'rsync',
        [
          '--daemon',
          '--no-detach',
          `--config=${confPath}`,
          `--address=${address}`,
          `--port=${port}`,
        ],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      this.child = child;
      this.metrics.rsyncUp.set(1);
      let stderr = '';
      child.stderr?.on(
        'data',
        (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)),
      );
      const startedAt = Date.now();
      child.on('error', (err) => this.logger.error('rsync daemon failed to start', { err }));
      child.on('exit', (code, signal) => {
        this.metrics.rsyncUp.set(0);
        this.child = undefined;
        if (this.stopped) return;
        if (Date.now() - startedAt > MAX_BACKOFF_MS) this.backoffMs = MIN_BACKOFF_MS;
        this.logger.warn('rsync daemon exited, restarting', {
          code,
          signal,
          stderr: stderr.trim(),
          inMs: this.backoffMs,
        });
        this.metrics.rsyncRestarts.inc();
        this.timer = setTimeout(() => void this.launch(), this.backoffMs);
        this.timer.unref();
        this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      });
      this.logger.info('rsync daemon started', { address, port, pid: child.pid });
    } catch (err) {
      this.logger.error('rsync daemon could not be set up', { err });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
