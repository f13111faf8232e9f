// The three commands' command lines: --help, config errors with the original's messages (exit 1
// before anything starts), Redis unreachable, and a boot with the shipped config's shape.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli, spawnCli } from '../helpers/cli.js';
import { redisForTest } from '../helpers/services.js';
import { freePort } from '../helpers/net.js';
import { loadConfig } from '../../src/downloader/config.js';

const COMMANDS = ['downloader-api', 'downloader-processor', 'downloader-notifier'];
const SHIPPED = join(import.meta.dirname, '../../packaging/etc/skroutz-infra/downloader.json');

t.test('--help explains each command and exits 0', async (t) => {
  for (const command of COMMANDS) {
    const { code, stdout } = await runCli(t, [command, '--help']);
    t.equal(code, 0, command);
    t.match(stdout, /--config/, `${command} mentions --config`);
  }
  const api = await runCli(t, ['downloader-api', '--help']);
  t.match(api.stdout, /--port/);
  t.match(api.stdout, /--host/);
});

function baseConfig(dir: string): Record<string, unknown> {
  return {
    redis: { addr: '127.0.0.1:6379', key_prefix: 'cli-test:' },
    processor: { storage_dir: dir, download_url: 'http://files/base', metrics_addr: '' },
    notifier: { concurrency: 2, deletion_interval: 1, metrics_addr: '' },
    backends: { http: { timeout: 5 } },
  };
}

t.test('bad configs exit 1 with a message naming the problem', async (t) => {
  const dir = t.testdir({});
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form JSON patched per case
  type Patch = (c: Record<string, any>) => void;
  const cases: [string, string, Patch, RegExp][] = [
    [
      'notifier concurrency 0',
      'downloader-notifier',
      (c) => (c.notifier.concurrency = 0),
      /Notifier Concurrency must be a positive number/,
    ],
    [
      'download_url relative',
      'downloader-api',
      (c) => (c.processor.download_url = 'files'),
      /Could not parse Download URL, parse "files": invalid URI for request/,
    ],
    [
      'S3 storage',
      'downloader-processor',
      (c) => (c.processor.filestorage = { type: 's3' }),
      /S3 file storage is not supported/,
    ],
    [
      'unknown storage',
      'downloader-processor',
      (c) => (c.processor.filestorage = { type: 'tape' }),
      /Unknown filestorage type tape/,
    ],
    [
      'unknown backend',
      'downloader-notifier',
      (c) => (c.backends.carrier_pigeon = { speed: 1 }),
      /Unknown backend id "carrier_pigeon"/,
    ],
    [
      'string http timeout',
      'downloader-notifier',
      (c) => (c.backends.http.timeout = '30'),
      /backends\.http\.timeout/,
    ],
    [
      'no backend',
      'downloader-notifier',
      (c) => (c.backends = { http: {} }),
      /at least one of http or kafka/,
    ],
    [
      'storage dir missing',
      'downloader-processor',
      (c) => (c.processor.storage_dir = join(dir, 'nope')),
      /Error verifying storage directory is writable: ENOENT/,
    ],
    [
      'watermarks reversed',
      'downloader-processor',
      (c) => (c.processor.disk = { low_pct: 96, high_pct: 95 }),
      /low_pct \(96\) must be below high_pct \(95\)/,
    ],
    [
      'download_url missing',
      'downloader-api',
      (c) => delete c.processor.download_url,
      /processor\.download_url: is required/,
    ],
  ];
  for (const [label, command, patch, message] of cases) {
    const config = baseConfig(dir);
    patch(config);
    const path = join(dir, `${label.replace(/\W+/g, '-')}.json`);
    writeFileSync(path, JSON.stringify(config));
    const { code, stderr } = await runCli(t, [command, '-c', path]);
    t.equal(code, 1, label);
    t.match(stderr, message, label);
  }
  const missing = await runCli(t, ['downloader-api', '-c', join(dir, 'absent.json')]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /absent\.json[\s\S]*file not found/);
});

t.test('Redis unreachable: exit 1 after the PING deadline', async (t) => {
  const dir = t.testdir({});
  const config = baseConfig(dir);
  (config.redis as Record<string, unknown>).addr = `127.0.0.1:${await freePort()}`;
  const path = join(dir, 'c.json');
  writeFileSync(path, JSON.stringify(config));
  const { code, stderr } = await runCli(t, ['downloader-notifier', '-c', path], {
    timeoutMs: 20_000,
  });
  t.equal(code, 1);
  t.match(stderr, /Could not ping Redis Server successfully: /);
});

t.test('the shipped config is valid and boots each component', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form JSON, edited below
  const shipped = JSON.parse(readFileSync(SHIPPED, 'utf8')) as Record<string, any>;
  const parsed = await loadConfig(SHIPPED, {});
  t.equal(parsed.processor.shutdownGraceMs, shipped.processor.shutdown_grace_ms);
  t.equal(parsed.notifier.shutdownGraceMs, shipped.notifier.shutdown_grace_ms);
  // Same file with this test's dirs, Redis prefix and free ports.
  const dir = t.testdir({ tmp: {}, files: {} });
  const { prefix } = redisForTest(t);
  shipped.redis.key_prefix = prefix;
  shipped.processor.storage_dir = join(dir, 'tmp');
  shipped.processor.filestorage.rootdir = join(dir, 'files');
  shipped.processor.metrics_addr = `127.0.0.1:${await freePort()}`;
  shipped.notifier.metrics_addr = `127.0.0.1:${await freePort()}`;
  const path = join(dir, 'downloader.json');
  writeFileSync(path, JSON.stringify(shipped));
  const lines: [string, string[], RegExp][] = [
    ['downloader-api', ['--host', '127.0.0.1', '--port', '0'], /"msg":"api_listening"/],
    ['downloader-processor', [], /"msg":"processor_started"/],
    ['downloader-notifier', [], /"msg":"notifier_started"/],
  ];
  for (const [command, args, line] of lines) {
    const cli = spawnCli(t, [command, '--config', path, ...args]);
    const started = await cli.waitForLine(line, 15_000);
    t.match(started, /"version":"\d+\.\d+\.\d+/, `${command} logs its version`);
    t.match(
      started,
      new RegExp(`"config":"${path.replace(/[/.]/g, '\\$&')}"`),
      `${command} logs its config`,
    );
    const stoppedAt = Date.now();
    t.equal(await cli.stop('SIGTERM', 10_000), 0, `${command} exits 0 on SIGTERM`, {
      output: cli.output(),
    });
    t.ok(Date.now() - stoppedAt < 5000, `${command} stops promptly when idle`);
  }
});
