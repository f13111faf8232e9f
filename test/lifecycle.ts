// The process edge every long-running component shares, against the built executable: a
// supervisor that sends SIGTERM the moment it reads the start line gets a graceful stop and exit
// 0, and main.ts logs the deadline it enforces. Before Service.announce existed, the start line
// could come before the signal handlers and such a SIGTERM killed the process outright.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spawnCli } from './helpers/cli.js';
import { KAFKA_BROKERS, REDIS_URL, uniqueId } from './helpers/services.js';

interface LifecycleCase {
  component: string;
  /** The config file's content for a private folder `dir`. */
  config: (dir: string) => unknown;
  /** Arguments after the subcommand, given the config path. */
  args: (config: string) => string[];
  startLine: RegExp;
}

const redisAddr = new URL(REDIS_URL).host;

const CASES: LifecycleCase[] = [
  {
    component: 'scratchd',
    config: (dir) => ({
      listen: '127.0.0.1:0',
      admin_listen: '127.0.0.1:0',
      data_dir: join(dir, 'data'),
      tenants: { default: { hosts: ['*'], sinks: ['archive'] } },
      sinks: { archive: { type: 'file', dir: 'events' } },
    }),
    args: (config) => ['serve', '--config', config],
    startLine: /"msg":"listening"/,
  },
  {
    component: 'rafka',
    config: () => ({ general: { 'bootstrap.servers': KAFKA_BROKERS.join(',') } }),
    args: (config) => ['--config', config, '--host', '127.0.0.1', '--port', '0', '--no-metrics'],
    startLine: /Listening on /,
  },
  {
    component: 'downloader-api',
    config: (dir) => ({
      redis: { addr: redisAddr, key_prefix: `${uniqueId('lifecycle')}:` },
      processor: {
        storage_dir: join(dir, 'tmp'),
        filestorage: { type: 'filesystem', rootdir: join(dir, 'files') },
        download_url: 'http://127.0.0.1/files',
      },
      notifier: { concurrency: 1, deletion_interval: 180 },
      backends: { http: { timeout: 30 } },
    }),
    args: (config) => ['--config', config, '--host', '127.0.0.1', '--port', '0'],
    startLine: /"msg":"api_listening"/,
  },
  {
    component: 'mistry-server',
    // mistry-server wants both folders to exist already, as the package's postinst makes them.
    config: (dir) => ({
      projects_path: madeDir(join(dir, 'projects')),
      build_path: madeDir(join(dir, 'data')),
    }),
    args: (config) => ['--config', config, '--addr', '127.0.0.1:0'],
    startLine: /Listening on /,
  },
];

function madeDir(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

function privateDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'skroutz-lifecycle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// The race this guards against lost about every second start, so each case runs a few times.
const ROUNDS = 3;

for (const c of CASES) {
  t.test(`${c.component}: SIGTERM sent on the start line stops it cleanly`, async (t) => {
    for (let round = 1; round <= ROUNDS; round += 1)
      await t.test(`round ${round}`, (t) => stopOnStartLine(t, c));
  });
}

async function stopOnStartLine(t: Test, c: LifecycleCase): Promise<void> {
  const dir = privateDir(t);
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify(c.config(dir)));
  const cli = spawnCli(t, [c.component, ...c.args(config)], { cwd: dir });

  await cli.waitForLine(c.startLine, 30_000);
  const code = await cli.stop('SIGTERM', 60_000);

  t.equal(code, 0, 'exit 0', { output: cli.output() });
  const stop = cli.output().match(/"msg":"stop requested".*"deadlineMs":(\d+)/);
  t.ok(stop, 'main.ts logged the stop request with its deadline');
}
