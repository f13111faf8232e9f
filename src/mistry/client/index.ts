/**
 * `skroutz-infra mistry build`: schedules a build on a mistry server, streams its log to stderr
 * while it runs, and fetches the artifacts over HTTP (`artifacts.tar`) or rsync. Exit codes are
 * for CI: 0 success, 1 build failed, 2 usage, 3 server refused or failed, 4 timeout, 5 download.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { Command, CommanderError } from 'commander';
import type { CliIo } from '../../common/component.js';
import { orderedBuildInfo, type BuildInfo } from '../build-info.js';
import { extractTar } from './extract.js';
import { InputError, parseDuration, parseParams } from './params.js';

export const CLIENT_EXIT = {
  ok: 0,
  buildFailed: 1,
  usage: 2,
  server: 3,
  timeout: 4,
  download: 5,
} as const;

const DEFAULT_SERVER = 'http://127.0.0.1:8462';

interface BuildFlags {
  project?: string;
  group: string;
  target: string;
  async?: boolean;
  wait?: boolean;
  timeout: string;
  server?: string;
  host?: string;
  port?: string;
  transport: string;
  transportUser?: string;
  rsyncPort: string;
  clearTarget?: boolean;
  rebuild?: boolean;
  jsonResult?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  token?: string;
}

/** A failure with the exit code it maps to; its message goes to stderr. */
class ClientError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

function buildCommand(io: CliIo): Command {
  const command = new Command('skroutz-infra mistry')
    .description('mistry client: schedule a build on a mistry server and fetch its artifacts.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .addHelpText(
      'after',
      '\nThe client takes no --config: it is configured by flags and $MISTRY_SERVER, $MISTRY_TOKEN.',
    );
  command
    .command('build')
    .description('build a project (params as key=value arguments) and download its artifacts')
    .argument('[params...]', 'build params: key=value, key value, key=@file, key=@@literal')
    .option('--project <name>', 'project to build (required)')
    .option('-g, --group <name>', 'group for incremental builds', '')
    .option('-t, --target <dir>', 'where the artifacts go (created if missing)', '.')
    .option('--async', 'schedule and return at once; no download')
    .option('--no-wait', 'alias of --async')
    .option('--timeout <duration>', 'Go-style duration for the whole wait incl. download', '60m')
    .option('--server <url>', `server base URL (default $MISTRY_SERVER or ${DEFAULT_SERVER})`)
    .option('--host <host>', 'server host (the original client form; with --port)')
    .option('--port <port>', 'server port (the original client form; with --host)')
    .option('--transport <kind>', 'artifact transport: http or rsync', 'http')
    .option('--transport-user <user>', 'rsync daemon user')
    .option('--rsync-port <port>', 'rsync daemon port', '873')
    .option('--clear-target', 'empty the target first (http) / --delete (rsync)')
    .option('--rebuild', 'rebuild the image with pull and no cache')
    .option('--json-result', 'print the final BuildInfo to stdout')
    .option('-q, --quiet', 'do not stream the build log')
    .option('-v, --verbose', 'extra progress lines')
    .option('--token <token>', 'bearer token (default $MISTRY_TOKEN)')
    .allowExcessArguments();
  return command;
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const command = buildCommand(io);
  let parsed: { flags: BuildFlags; params: string[] } | undefined;
  const build = command.commands[0];
  build
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  build.action((params: string[], flags: BuildFlags) => {
    parsed = { flags, params };
  });
  try {
    await command.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : CLIENT_EXIT.usage;
    throw err;
  }
  if (!parsed) {
    command.outputHelp();
    return CLIENT_EXIT.usage;
  }
  try {
    return await runBuild(parsed.flags, parsed.params, io);
  } catch (err) {
    if (err instanceof ClientError) {
      io.stderr.write(`${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof InputError) {
      io.stderr.write(`${err.message}\n`);
      return CLIENT_EXIT.usage;
    }
    throw err;
  }
}

function serverUrl(flags: BuildFlags, env: NodeJS.ProcessEnv): string {
  const hostForm = flags.host !== undefined || flags.port !== undefined;
  if (hostForm && flags.server !== undefined) {
    throw new ClientError(CLIENT_EXIT.usage, 'use either --server or --host/--port, not both');
  }
  if (hostForm) return `http://${flags.host ?? '127.0.0.1'}:${flags.port ?? '8462'}`;
  return (flags.server ?? env.MISTRY_SERVER ?? DEFAULT_SERVER).replace(/\/+$/, '');
}

async function prepareTarget(target: string): Promise<void> {
  const stats = await stat(target).catch(() => undefined);
  if (stats && !stats.isDirectory()) {
    throw new ClientError(
      CLIENT_EXIT.usage,
      `Target path (${target}) is not a directory. Aborting.`,
    );
  }
  if (!stats) await mkdir(target, { recursive: true });
}

class TimedOut extends Error {}

async function runBuild(flags: BuildFlags, rawParams: string[], io: CliIo): Promise<number> {
  const say = (line: string): void => void io.stderr.write(`${line}\n`);
  if (!flags.project) throw new ClientError(CLIENT_EXIT.usage, 'project cannot be empty');
  if (flags.transport !== 'http' && flags.transport !== 'rsync') {
    throw new ClientError(CLIENT_EXIT.usage, `invalid transport argument (${flags.transport})`);
  }
  const timeoutMs = parseDuration(flags.timeout);
  const server = serverUrl(flags, io.env);
  const target = resolve(io.cwd, flags.target);
  const isAsync = flags.async === true || flags.wait === false;
  if (!isAsync) await prepareTarget(target);
  const params = await parseParams(rawParams, io.cwd);
  const token = flags.token ?? io.env.MISTRY_TOKEN;
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const body = JSON.stringify({
    Project: flags.project,
    Params: params,
    Group: flags.group,
    Rebuild: flags.rebuild === true,
  });
  const verbose = (line: string): void => {
    if (flags.verbose) say(line);
  };
  verbose(
    `Scheduling ${flags.project}${flags.group ? ` (group ${flags.group})` : ''} on ${server}...`,
  );
  const controller = new AbortController();
  const timer =
    timeoutMs > 0 ? setTimeout(() => controller.abort(new TimedOut()), timeoutMs) : undefined;
  try {
    if (isAsync) return await scheduleAsync(server, headers, body, controller.signal, io);
    const info = await scheduleAndWait(
      server,
      headers,
      body,
      controller.signal,
      flags.quiet === true,
      io,
    );
    say(`Logs can be found at ${server}/${info.URL}`);
    if (info.ExitCode !== 0) {
      if (info.ErrBuild) say(info.ErrBuild);
      if (info.ContainerStderr) say(`Container error logs:\n${info.ContainerStderr}`);
      else say('There are no container error logs.');
      if (flags.jsonResult)
        io.stdout.write(
          `${JSON.stringify(orderedBuildInfo({ ...info, ContainerStdouterr: '' }))}\n`,
        );
      say(`Build failed with exit code ${info.ExitCode}`);
      return CLIENT_EXIT.buildFailed;
    }
    verbose(
      `Build done (cached: ${info.Cached}, coalesced: ${info.Coalesced}, incremental: ${info.Incremental})`,
    );
    if (flags.clearTarget && flags.transport === 'http') await clearDir(target);
    verbose(`Downloading artifacts over ${flags.transport} into ${target}...`);
    try {
      if (flags.transport === 'http')
        await downloadHttp(server, headers, flags.project, info, target, controller.signal);
      else await downloadRsync(server, flags, info, target, controller.signal);
    } catch (err) {
      if (controller.signal.aborted) throw err;
      throw new ClientError(
        CLIENT_EXIT.download,
        `Could not download artifacts: ${(err as Error).message}`,
      );
    }
    say(`Artifacts copied to ${target}`);
    if (flags.jsonResult)
      io.stdout.write(`${JSON.stringify(orderedBuildInfo({ ...info, ContainerStdouterr: '' }))}\n`);
    return CLIENT_EXIT.ok;
  } catch (err) {
    if (controller.signal.aborted && controller.signal.reason instanceof TimedOut) {
      throw new ClientError(CLIENT_EXIT.timeout, `The build did not finish after ${flags.timeout}`);
    }
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

async function post(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (init.signal?.aborted) throw err;
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new ClientError(
      CLIENT_EXIT.server,
      `Could not reach ${url}: ${cause ?? (err as Error).message}`,
    );
  }
}

async function refuse(response: Response): Promise<never> {
  if (response.status === 503) {
    const text = (await response.text()).trim();
    throw new ClientError(
      CLIENT_EXIT.server,
      text === '' ? '(error: 503) Server is overloaded; try again later' : `(error: 503) ${text}`,
    );
  }
  const text = (await response.text()).trim();
  throw new ClientError(
    CLIENT_EXIT.server,
    `(error: ${response.status}) Error scheduling build: ${text}`,
  );
}

async function scheduleAsync(
  server: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
  io: CliIo,
): Promise<number> {
  const response = await post(`${server}/jobs?async`, {
    method: 'POST',
    headers: { ...headers, Accept: 'application/json' },
    body,
    signal,
  });
  if (response.status !== 201) return refuse(response);
  const text = await response.text();
  if (text.trim() !== '') {
    const answer = JSON.parse(text) as { url?: string };
    if (answer.url) io.stdout.write(`${server}/${answer.url}\n`);
  }
  return CLIENT_EXIT.ok;
}

interface StreamEvent {
  type: string;
  data?: string;
  status?: number;
  message?: string;
  buildInfo?: BuildInfo;
}

async function scheduleAndWait(
  server: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
  quiet: boolean,
  io: CliIo,
): Promise<BuildInfo> {
  const response = await post(`${server}/jobs?stream=1`, { method: 'POST', headers, body, signal });
  if (response.status !== 201) return refuse(response);
  const type = response.headers.get('content-type') ?? '';
  // An original server ignores `stream` and answers the plain BuildInfo.
  if (!type.includes('application/x-ndjson')) {
    const info = JSON.parse(await response.text()) as BuildInfo;
    if (!quiet && info.ContainerStdouterr) io.stderr.write(info.ContainerStdouterr);
    return info;
  }
  let partial = '';
  let result: BuildInfo | undefined;
  const onLine = (line: string): void => {
    if (line.trim() === '') return;
    const event = JSON.parse(line) as StreamEvent;
    if (event.type === 'log' && !quiet) io.stderr.write(event.data ?? '');
    if (event.type === 'result') result = event.buildInfo;
    if (event.type === 'error') {
      throw new ClientError(
        CLIENT_EXIT.server,
        `(error: ${event.status ?? 500}) Error scheduling build: ${event.message ?? ''}`,
      );
    }
  };
  const decoder = new TextDecoder();
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    partial += decoder.decode(chunk, { stream: true });
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    lines.forEach(onLine);
  }
  onLine(partial);
  if (!result)
    throw new ClientError(
      CLIENT_EXIT.server,
      'the server closed the stream before the build result',
    );
  return result;
}

async function clearDir(dir: string): Promise<void> {
  for (const name of await readdir(dir))
    await rm(resolve(dir, name), { recursive: true, force: true });
}

/** GETs `url` with node:http(s), which streams large bodies with less overhead than fetch. */
function getStream(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolveGet, reject) => {
    const req = get(url, { headers, signal }, resolveGet);
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error(`no data from ${url} for 60 s`)));
  });
}

async function downloadHttp(
  server: string,
  headers: Record<string, string>,
  project: string,
  info: BuildInfo,
  target: string,
  signal: AbortSignal,
): Promise<void> {
  const id = info.URL.split('/').pop() ?? '';
  const url = `${server}/jobs/${encodeURIComponent(project)}/${id}/artifacts.tar`;
  const auth: Record<string, string> = headers.Authorization
    ? { Authorization: headers.Authorization }
    : {};
  const response = await getStream(url, auth, signal);
  if (response.statusCode !== 200) {
    let text = '';
    for await (const chunk of response) text += (chunk as Buffer).toString();
    throw new Error(`(error: ${response.statusCode}) ${text.trim()}`);
  }
  await extractTar(response as AsyncIterable<Buffer>, target);
}

function downloadRsync(
  server: string,
  flags: BuildFlags,
  info: BuildInfo,
  target: string,
  signal: AbortSignal,
): Promise<void> {
  const host = new URL(server).hostname;
  const id = info.URL.split('/').pop() ?? '';
  const user = flags.transportUser ? `${flags.transportUser}@` : '';
  const source = `${user}${host}::mistry/${flags.project}/ready/${id}/data/artifacts/`;
  const args = [
    '-rtlp',
    ...(flags.clearTarget ? ['--delete'] : []),
    '--port',
    flags.rsyncPort,
    source,
    `${target}/`,
  ];
  return new Promise((resolvePromise, reject) => {
    const child = spawn('rsync', args, { stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolvePromise();
      else
        reject(new Error(`rsync ${args.join(' ')} failed: exit status ${code} (${stderr.trim()})`));
    });
  });
}
