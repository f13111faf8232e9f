/**
 * The `skroutz-infra` entry point. It only routes: commander picks the subcommand, the component's
 * module is loaded with `import()` so that booting one never evaluates another's dependencies,
 * and the component parses its own flags. This file owns the process edge: signals, the shutdown
 * deadline and the exit code.
 */
import { Command } from 'commander';
import { ExitCode, type CliIo, type ComponentMain } from './common/component.js';
import { errorCode, SkroutzError, toError } from './common/errors.js';
import { createLogger } from './common/logger.js';
import { supervise } from './common/supervisor.js';
import { REVISION, VERSION } from './common/version.js';

interface ComponentEntry {
  name: string;
  summary: string;
  load: () => Promise<{ main: ComponentMain }>;
}

const COMPONENTS: readonly ComponentEntry[] = [
  {
    name: 'scratchd',
    summary: 'multi-tenant web analytics collector (pixel, JSON events) with durable sinks',
    load: () => import('./scratchd/index.js'),
  },
  {
    name: 'rafka',
    summary: 'Kafka proxy speaking a subset of the Redis protocol (drop-in for rafka)',
    load: () => import('./rafka/index.js'),
  },
  {
    name: 'downloader-api',
    summary: 'downloader HTTP API and dashboard: accepts download jobs',
    load: () => import('./downloader/api/index.js'),
  },
  {
    name: 'downloader-processor',
    summary: 'downloader worker: fetches, checks and stores files under per-aggregation limits',
    load: () => import('./downloader/processor/index.js'),
  },
  {
    name: 'downloader-notifier',
    summary: 'downloader callbacks: delivers job results over HTTP or Kafka',
    load: () => import('./downloader/notifier/index.js'),
  },
  {
    name: 'mistry-server',
    summary: 'Docker build server that caches, coalesces and snapshots builds',
    load: () => import('./mistry/server/index.js'),
  },
  {
    name: 'mistry',
    summary: 'mistry client: schedule a build, stream its log, fetch its artifacts',
    load: () => import('./mistry/client/index.js'),
  },
];

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

async function runComponent(entry: ComponentEntry, args: string[]): Promise<number> {
  const io = processIo();
  const log = createLogger({ stream: io.stderr, fields: { component: entry.name } });
  const fatal = (err: unknown): void => {
    log.error('unexpected error, exiting', { err: toError(err) });
    process.exit(ExitCode.failure);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);

  const module = await entry.load();
  const result = await module.main(args, io);
  if (typeof result === 'number') return result;

  const supervised = supervise(result, log);
  result.announce?.();
  const { code, forced } = await supervised;
  // A forced stop leaves work behind on purpose; exit now rather than wait for it.
  if (forced) process.exit(code);
  return code;
}

function reportFailure(err: unknown, name: string): number {
  const error = toError(err);
  if (error instanceof SkroutzError) {
    process.stderr.write(`skroutz-infra ${name}: ${error.message}\n`);
    if (errorCode(error) === 'ERR_NOT_IMPLEMENTED') return ExitCode.notImplemented;
    return errorCode(error) === 'ERR_USAGE' ? ExitCode.usage : ExitCode.failure;
  }
  process.stderr.write(`skroutz-infra ${name}: ${error.stack ?? error.message}\n`);
  return ExitCode.failure;
}

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('skroutz-infra')
    .description('Analytics collection, a Kafka proxy, a download service and a build server.')
    .version(`${VERSION} (${REVISION})`, '-V, --version', 'print the version and exit')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', '\nRun `skroutz-infra <command> --help` for the flags of each command.');
  for (const entry of COMPONENTS) {
    program
      .command(entry.name)
      .description(entry.summary)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]', 'arguments for the component')
      .action(async (args: string[]) => {
        try {
          setExit(await runComponent(entry, args));
        } catch (err) {
          setExit(reportFailure(err, entry.name));
        }
      });
  }
  program
    .command('version')
    .description('print the version, git revision and Node.js runtime')
    .option('--json', 'print as JSON')
    .action((opts: { json?: boolean }) => {
      const info = { version: VERSION, revision: REVISION, node: process.version };
      const text = opts.json
        ? JSON.stringify(info)
        : `skroutz-infra ${VERSION} (revision ${REVISION}, node ${process.version})`;
      process.stdout.write(`${text}\n`);
    });
  return program;
}

async function main(): Promise<void> {
  // A reader that goes away (`skroutz-infra --help | head -3`) is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
  }
  // Node's single-executable runtime passes the executable itself as argv[1] too.
  const program = buildProgram((code) => {
    process.exitCode = code;
  });
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const exitCode = (err as { exitCode?: unknown }).exitCode;
    process.exitCode = typeof exitCode === 'number' ? exitCode : ExitCode.failure;
  }
  // Anything still holding the event loop after the exit code is known is a leak; do not wait
  // on it forever. The timer is unref'd, so a clean process exits before it fires.
  setTimeout(() => process.exit(), 2000).unref();
}

void main();
