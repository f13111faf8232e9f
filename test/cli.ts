// End-to-end checks of the router itself, against the built executable.
import t from 'tap';
import { runCli, spawnCli } from './helpers/cli.js';
import { KAFKA_BROKERS } from './helpers/services.js';

const SUBCOMMANDS = [
  'scratchd',
  'rafka',
  'downloader-api',
  'downloader-processor',
  'downloader-notifier',
  'mistry-server',
  'mistry',
  'version',
];

t.test('--help lists every subcommand with a description', async (t) => {
  const { code, stdout } = await runCli(t, ['--help']);
  t.equal(code, 0);
  for (const name of SUBCOMMANDS) t.match(stdout, new RegExp(`^  ${name} .*\\S`, 'm'), name);
});

t.test('version prints the version, revision and runtime', async (t) => {
  const { code, stdout } = await runCli(t, ['version', '--json']);
  t.equal(code, 0);
  const info = JSON.parse(stdout) as { version: string; revision: string; node: string };
  t.match(info.version, /^\d+\.\d+\.\d+/);
  t.match(info.revision, /^[0-9a-f]{7,}|unknown$/);
  t.match(info.node, /^v2[4-9]\./, 'a supported LTS runtime is embedded');
  const plain = await runCli(t, ['--version']);
  t.equal(plain.code, 0);
  t.match(plain.stdout, info.version);
});

t.test('an unknown subcommand fails with a hint', async (t) => {
  const { code, stderr } = await runCli(t, ['frobnicate']);
  t.equal(code, 1);
  t.match(stderr, /unknown command 'frobnicate'/);
  t.match(stderr, /--help/);
});

t.test('a Kafka client starts without runtime warnings on stderr', async (t) => {
  // kafkajs arms a negative timer when it connects, which Node 24+ reports as
  // TimeoutNegativeWarning on every start; the executable's embedded flags silence that one kind.
  const rafka = spawnCli(t, [
    'rafka',
    '-c',
    'packaging/etc/rafka/librdkafka.json',
    '-b',
    KAFKA_BROKERS.join(','),
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--no-metrics',
  ]);
  await rafka.waitForLine(/"Kafka client connected".*"role":"producer"/);
  t.equal(await rafka.stop('SIGTERM'), 0);
  t.notMatch(rafka.stderr.join('\n'), /Warning/, 'no warning printed');
});
