/**
 * `skroutz-infra scratchd [serve|check|replay]` (spec §3.1). Bare `scratchd` is `scratchd serve`.
 * With no `--config` and no file at the default path, serve runs on the built-in config.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { applyOverrides, readJsonFile, type Override } from '../common/config.js';
import { ExitCode, type CliIo, type Service } from '../common/component.js';
import { ConfigError, describeValue, UsageError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import {
  buildConfig,
  builtInConfig,
  DEFAULT_CONFIG_PATH,
  issueLines,
  type ScratchdConfig,
} from './config.js';
import { LockedError } from './lock.js';
import { runReplay } from './replay.js';
import { Scratchd } from './service.js';

const HELP = `Usage: skroutz-infra scratchd [serve] [options]
       skroutz-infra scratchd check [--config F] [--json]
       skroutz-infra scratchd replay --config F --sink S --from P [options]

Multi-tenant web analytics collector: the /track pixel, /e and /batch JSON events and the signed
/r click-out redirect, stored in file, redis, kafka, rafka and stdout sinks with a disk spool per
sink, so no accepted event is lost when a sink is down. Guide: docs/scratchd.md.

Commands:
  serve (default)   run the collector; SIGTERM drains, SIGHUP reloads the config
  check             validate the config without touching data_dir or the network;
                    prints "ok: <t> tenants, <s> sinks" or one "path: problem" line each
                    on stderr (exit 1)
  replay            re-deliver stored events (JSONL archive, dead letters, spool segments)

Options (serve):
  --config F        JSON config (default ${DEFAULT_CONFIG_PATH}; when that file is absent
                    and --config is not given, a built-in config with one file sink under
                    ./scratchd-data is used)
  --listen H:P      public listener (overrides "listen", default 0.0.0.0:8080)
  --admin-listen H:P admin listener with /healthz, /readyz, /metrics (default 127.0.0.1:9181)
  --data-dir D      local state: lock, salts, spools, WAL, file archive (overrides "data_dir")
  --instance N      instance name, in every event's ctx.instance and in file names
  -h, --help        show this help

Options (check):
  --config F        the config to validate (default ${DEFAULT_CONFIG_PATH})
  --json            print one JSON object on stdout instead: {"ok":true,"tenants":<t>,
                    "sinks":<s>}, or {"ok":false,"problems":[{"path","message"}]} with exit 1

Options (replay):
  --config F        the config that defines the sink
  --sink S          sink to write through (its batching and retries, no spool)
  --from P          a *.jsonl file or *.seg spool segment, or a directory tree of them
  --tenant T        only events of this tenant
  --since ISO       only events received at or after this time
  --until ISO       only events received before this time
  --dry-run         count only
  --json            print the summary as one JSON object on stdout: {"ok","read","written",
                    "skipped","failed"}; config problems as check --json prints them. Not
                    with a stdout sink, which writes the events there

replay prints "read=<n> written=<n> skipped=<n> failed=<n>"; exit 1 when events failed.
Command-line mistakes (missing or bad flags) go to stderr with exit 2, with or without --json.
`;

const FLAGS = {
  config: { type: 'string' },
  listen: { type: 'string' },
  'admin-listen': { type: 'string' },
  'data-dir': { type: 'string' },
  instance: { type: 'string' },
  sink: { type: 'string' },
  from: { type: 'string' },
  tenant: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = ReturnType<
  typeof parseArgs<{ options: typeof FLAGS; allowPositionals: true }>
>['values'];

function parse(argv: string[]): { command: string; flags: Flags } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (run with --help for usage)`);
  }
  const [command = 'serve', ...rest] = parsed.positionals;
  if (!['serve', 'check', 'replay'].includes(command))
    throw new UsageError(`unknown command ${JSON.stringify(command)} (run with --help for usage)`);
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  return { command, flags: parsed.values };
}

interface Loaded {
  config: ScratchdConfig;
  path: string | undefined;
}

/** Reads the file (or the built-in config), applies the flags, checks everything. */
async function loadConfig(flags: Flags, io: CliIo, allowBuiltIn: boolean): Promise<Loaded> {
  const explicit = flags.config !== undefined;
  const path = resolve(io.cwd, flags.config ?? DEFAULT_CONFIG_PATH);
  const builtIn = !explicit && allowBuiltIn && !existsSync(path);
  const raw = builtIn ? builtInConfig() : await readJsonFile(path);
  const overrides: Override[] = [
    { path: 'listen', value: flags.listen },
    { path: 'admin_listen', value: flags['admin-listen'] },
    { path: 'data_dir', value: flags['data-dir'] },
    { path: 'instance', value: flags.instance },
  ];
  const source = builtIn ? 'the built-in config' : path;
  return {
    config: buildConfig(applyOverrides(raw, overrides), source, io.env, io.cwd),
    path: builtIn ? undefined : path,
  };
}

/**
 * Reports an invalid config and returns exit 1: one `path: message` line per problem on stderr,
 * or with `--json` one `{"ok":false,"problems":[...]}` object on stdout.
 */
function printIssues(err: unknown, io: CliIo, json = false): number {
  if (!(err instanceof ConfigError)) throw err;
  if (json) {
    // A problem with the file as a whole (missing, not JSON) has no path to point at, so its
    // message names the file instead.
    const problems = err.issues.map((issue) => {
      const rule = issue.path === '' ? `${err.source}: ${issue.rule}` : issue.rule;
      const got = 'value' in issue ? ` (got ${describeValue(issue.value)})` : '';
      return { path: issue.path, message: `${rule}${got}` };
    });
    io.stdout.write(`${JSON.stringify({ ok: false, problems })}\n`);
  } else {
    for (const line of issueLines(err)) io.stderr.write(`${line}\n`);
  }
  return ExitCode.failure;
}

async function serve(flags: Flags, io: CliIo): Promise<number | Service> {
  const logger = createLogger({ stream: io.stderr, fields: { component: 'scratchd' } });
  let loaded: Loaded;
  try {
    loaded = await loadConfig(flags, io, true);
  } catch (err) {
    return printIssues(err, io);
  }
  if (loaded.path === undefined) {
    logger.warn('no config file, running on the built-in config', {
      missing: DEFAULT_CONFIG_PATH,
      data_dir: loaded.config.data_dir,
    });
  }
  const service = new Scratchd({
    config: loaded.config,
    configPath: loaded.path,
    reloadConfig: async () => (await loadConfig(flags, io, true)).config,
    io,
    logger,
  });
  try {
    await service.start();
  } catch (err) {
    if (err instanceof LockedError) {
      logger.error(err.message, { data_dir: loaded.config.data_dir });
      io.stderr.write(`skroutz-infra scratchd: ${err.message}\n`);
      return ExitCode.failure;
    }
    logger.error('start-up failed', { err });
    await service.abortStart();
    return ExitCode.failure;
  }
  return service;
}

async function check(flags: Flags, io: CliIo): Promise<number> {
  try {
    const { config } = await loadConfig(flags, io, false);
    const tenants = Object.keys(config.tenants).length;
    const sinks = Object.keys(config.sinks).length;
    io.stdout.write(
      flags.json === true
        ? `${JSON.stringify({ ok: true, tenants, sinks })}\n`
        : `ok: ${tenants} tenants, ${sinks} sinks\n`,
    );
    return ExitCode.ok;
  } catch (err) {
    return printIssues(err, io, flags.json === true);
  }
}

export async function main(argv: string[], io: CliIo): Promise<number | Service> {
  const { command, flags } = parse(argv);
  if (flags.help === true) {
    io.stdout.write(HELP);
    return ExitCode.ok;
  }
  if (command === 'check') return check(flags, io);
  if (command === 'replay') {
    if (flags.config === undefined || flags.sink === undefined || flags.from === undefined) {
      throw new UsageError('replay needs --config, --sink and --from (run with --help for usage)');
    }
    let loaded: Loaded;
    try {
      loaded = await loadConfig(flags, io, false);
    } catch (err) {
      return printIssues(err, io, flags.json === true);
    }
    return runReplay(loaded.config, {
      sink: flags.sink,
      from: resolve(io.cwd, flags.from),
      tenant: flags.tenant,
      since: flags.since,
      until: flags.until,
      dryRun: flags['dry-run'] === true,
      json: flags.json === true,
      io,
    });
  }
  return serve(flags, io);
}
