/**
 * `skroutz-infra mistry-server`: the Docker build server. Parses flags, loads the config, recovers
 * the build tree, then serves the HTTP API until SIGTERM, when it drains running builds within
 * `shutdown_grace_s`. `mistry-server rebuild` is the operator command of spec §3.12.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import Docker from 'dockerode';
import type { CliIo, Service } from '../../common/component.js';
import { ExitCode, once } from '../../common/component.js';
import { UsageError } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { createRegistry } from '../../common/metrics.js';
import { formatAddress, listen } from '../../common/net.js';
import { VERSION } from '../../common/version.js';
import { BuildManager } from './builds.js';
import {
  DEFAULT_ADDR,
  DEFAULT_CONFIG_PATH,
  StartError,
  describeConfig,
  loadConfig,
  type ServerConfig,
} from './config.js';
import { createFilesystem } from './filesystem.js';
import { GarbageCollector } from './gc.js';
import { MistryHttp } from './http.js';
import { JobIndex } from './job-index.js';
import { createMetrics } from './metrics.js';
import { recoverTree, removeOrphans, takeLock } from './recovery.js';
import { runRebuild } from './rebuild.js';
import { RsyncDaemon } from './rsync.js';

type ServerFlags = {
  config: string;
  addr?: string;
  filesystem?: string;
};

function program(io: CliIo, name: string): Command {
  return new Command(name)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
}

/** Parses argv with commander; resolves undefined when help or version was printed. */
function parse<T extends Record<string, unknown>>(command: Command, argv: string[]): T | undefined {
  try {
    command.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return undefined;
      throw new UsageError(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  return command.opts<T>();
}

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  if (argv[0] === 'rebuild') return runRebuildCommand(argv.slice(1), io);
  const command = program(io, 'skroutz-infra mistry-server')
    .description('Docker build server: runs project builds with params, caches and coalesces them.')
    .option('-c, --config <file>', 'JSON config file', DEFAULT_CONFIG_PATH)
    .option(
      '-a, --addr <host:port>',
      `listen address (default from the config, else ${DEFAULT_ADDR})`,
    )
    .option(
      '--filesystem <kind>',
      'job dir adapter: plain or btrfs (default from the config, else plain)',
    )
    .addHelpText(
      'after',
      '\nOperator command:\n  rebuild [--fail-fast] [-p NAME]... [-v] [--json]   rebuild project images, prune labelled leftovers\n\nSee docs/mistry.md for the config keys and their defaults.',
    );
  const flags = parse<ServerFlags>(command, argv);
  if (!flags) return ExitCode.ok;
  const logger = createLogger({ stream: io.stderr, fields: { component: 'mistry-server' } });
  const config = await loadConfig(
    flags.config,
    { addr: flags.addr, filesystem: flags.filesystem },
    io.cwd,
    (key) => logger.warn('unknown config key ignored', { key }),
  );
  return startServer(config, logger);
}

async function startServer(config: ServerConfig, logger: Logger): Promise<Service> {
  const filesystem = await createFilesystem(config.filesystem, config.buildPath).catch(
    (err: unknown) => {
      throw new StartError((err as Error).message, { cause: err });
    },
  );
  const registry = createRegistry({ component: 'mistry-server' });
  const metrics = createMetrics(registry);
  const docker = new Docker();
  logger.info(`Configuration: ${JSON.stringify(describeConfig(config))}`);
  const releaseLock = await takeLock(config.buildPath);
  const index = new JobIndex();
  const hooks: { afterBuild?: () => void } = {};
  const builds = new BuildManager({
    config,
    docker,
    filesystem,
    logger,
    metrics,
    index,
    onFinished: () => hooks.afterBuild?.(),
  });
  try {
    const recovery = { layout: builds.layout, docker, filesystem, logger, metrics };
    await removeOrphans(recovery);
    await recoverTree(recovery);
    await index.load(config.buildPath, logger);
    for (const entry of index.all())
      metrics.buildsHosted.set({ project: entry.project }, index.countReady(entry.project));
  } catch (err) {
    await releaseLock();
    throw err;
  }
  const gc = new GarbageCollector({
    settings: config.gc,
    builds,
    index,
    filesystem,
    logger,
    metrics,
  });
  hooks.afterBuild = () => void gc.afterBuild();
  const rsync = new RsyncDaemon(config, logger, metrics);
  let draining = false;
  let dockerUp = true;
  const ping = (): void => {
    // dockerode takes options here though its types do not say so.
    const pingWith = docker.ping.bind(docker) as unknown as (options: {
      abortSignal: AbortSignal;
    }) => Promise<unknown>;
    pingWith({ abortSignal: AbortSignal.timeout(3000) }).then(
      () => (dockerUp = true),
      () => (dockerUp = false),
    );
  };
  ping();
  const probe = setInterval(ping, 5000);
  probe.unref();
  const http = new MistryHttp({
    builds,
    index,
    registry,
    metrics,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    tokens: config.tokens,
    isDraining: () => draining,
    health: () =>
      draining
        ? { status: 503, body: { status: 'draining' } }
        : {
            status: 200,
            body: { status: 'ok', docker: dockerUp ? 'up' : 'down', rsync: rsync.state },
          },
  });
  logger.info(`Set up ${config.jobConcurrency} workers`, { backlog: config.jobBacklog });
  let address;
  try {
    gc.start();
    rsync.start();
    address = await listen(http.server, config.port, config.host);
  } catch (err) {
    clearInterval(probe);
    await gc.stop();
    await rsync.stop();
    await releaseLock();
    throw new StartError(
      `cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const announce = (): void =>
    logger.info(`Listening on ${formatAddress(address)}...`, {
      version: VERSION,
      config: config.configPath,
      buildPath: config.buildPath,
      filesystem: config.filesystem,
    });

  let stopForced = false;
  const close = once(async (): Promise<number> => {
    draining = true;
    builds.startDraining();
    http.server.close();
    http.server.closeIdleConnections();
    const running = builds.busy;
    let idle = await builds.waitIdle(config.shutdownGraceS * 1000);
    if (!idle) {
      logger.warn('grace period over, stopping running builds', { running: builds.busy });
      builds.interruptAll();
      idle = await builds.waitIdle(25_000);
    }
    http.endStreams();
    // Answers of the last builds are being written; give them a moment before cutting.
    await new Promise((resolve) => setTimeout(resolve, stopForced ? 0 : 200));
    http.server.closeAllConnections();
    clearInterval(probe);
    await gc.stop();
    await rsync.stop();
    await releaseLock();
    logger.info('stopped', { drainedBuilds: running, interrupted: !idle || builds.busy > 0 });
    return ExitCode.ok;
  });
  return {
    close: (reason: string) => {
      logger.info(`shutting down (signal ${reason})`);
      return close();
    },
    destroy: () => {
      stopForced = true;
      builds.interruptAll();
      http.server.closeAllConnections();
    },
    done: new Promise<number>(() => undefined),
    shutdownTimeoutMs: (config.shutdownGraceS + 30) * 1000,
    announce,
  };
}

type RebuildFlags = {
  config: string;
  failFast?: boolean;
  project: string[];
  verbose?: boolean;
  json?: boolean;
  pruneMinAge: number;
};

/**
 * Leftovers younger than this are kept by `rebuild`'s prune: a running server may still need them.
 */
const DEFAULT_PRUNE_MIN_AGE_S = 600;

function seconds(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) {
    throw new InvalidArgumentError(`"${value}" is not a whole number of seconds`);
  }
  return parsed;
}

async function runRebuildCommand(argv: string[], io: CliIo): Promise<number> {
  const command = program(io, 'skroutz-infra mistry-server rebuild')
    .description(
      'Rebuild project images with pull and no cache, then prune stopped containers and dangling images labelled by mistry.',
    )
    .option('-c, --config <file>', 'JSON config file', DEFAULT_CONFIG_PATH)
    .option('--fail-fast', 'stop at the first failure')
    .option(
      '-p, --project <name>',
      'project to rebuild (repeatable; default every project)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('-v, --verbose', 'print the image build output')
    .option(
      '--prune-min-age <seconds>',
      'keep stopped containers and dangling images younger than this',
      seconds,
      DEFAULT_PRUNE_MIN_AGE_S,
    )
    .option(
      '--json',
      'print one JSON report on stdout instead of the Finished line (progress stays on stderr)',
    )
    .addHelpText(
      'after',
      [
        '',
        'Exit status: 0 when every project was rebuilt and the prune worked, 1 otherwise.',
        '',
        'The --json report is one line:',
        '  {"ok":bool, "projects":[{"name","ok","error"?,"durationMs"}], "skipped":[dir names],',
        '   "notAttempted":[names left after --fail-fast], "rebuilt":N, "failed":[names],',
        '   "pruned":{"ok","error"?,"containers","images","reclaimedBytes"}}',
        '',
        'See docs/mistry.md for the config keys and their defaults.',
      ].join('\n'),
    );
  const flags = parse<RebuildFlags>(command, argv);
  if (!flags) return ExitCode.ok;
  const config = await loadConfig(flags.config, {}, io.cwd, (key) =>
    io.stderr.write(`warning: unknown config key ${key} ignored\n`),
  );
  return runRebuild({
    config,
    docker: new Docker(),
    projects: flags.project,
    failFast: flags.failFast === true,
    verbose: flags.verbose === true,
    json: flags.json === true,
    pruneMinAgeS: flags.pruneMinAge,
    io,
  });
}
