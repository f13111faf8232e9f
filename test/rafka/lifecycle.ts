// Start-up, config checks, --help, metrics and the shutdown order against the built executable
// (§7 12–14 and the packaging contract).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import t from 'tap';
import { runCli, spawnCli } from '../helpers/cli.js';
import {
  RawClient,
  createTopics,
  produceDirect,
  encodeCommand,
  metricValue,
  readTopic,
  scrape,
  startRafka,
  testConfig,
  writeConfig,
} from '../helpers/rafka.js';
import { uniqueId } from '../helpers/services.js';

const SHIPPED_CONFIG = resolve(import.meta.dirname, '../../packaging/etc/rafka/librdkafka.json');

t.test('--help explains itself and mentions --config', async (t) => {
  const { code, stdout } = await runCli(t, ['rafka', '--help']);
  t.equal(code, 0);
  for (const flag of [
    '--config',
    '--port',
    '--bootstrap-servers',
    '--flush-timeout',
    '--shutdown-timeout',
  ]) {
    t.match(stdout, flag);
  }
  const version = await runCli(t, ['rafka', '-v']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+/);
});

const BAD_CONFIGS: {
  name: string;
  patch: (c: ReturnType<typeof testConfig>) => void;
  line: string;
}[] = [
  {
    name: 'unknown property',
    patch: (c) => (c.consumer = { ...c.consumer, 'foo.bar': 1 }),
    line: 'consumer: foo.bar: unknown property',
  },
  {
    name: 'wrong type',
    patch: (c) => (c.general = { ...c.general, 'session.timeout.ms': 'soon' }),
    line: 'consumer: session.timeout.ms: expected integer',
  },
  {
    name: 'offset store',
    patch: (c) => (c.consumer = { ...c.consumer, 'enable.auto.offset.store': true }),
    line: 'consumer: enable.auto.offset.store: unsupported value "true"',
  },
  {
    name: 'snappy',
    patch: (c) => (c.producer = { ...c.producer, 'compression.codec': 'snappy' }),
    line: 'producer: compression.codec: unsupported value "snappy"',
  },
];

t.test('an invalid config exits 1 before listening, naming section and property', async (t) => {
  for (const bad of BAD_CONFIGS) {
    const config = testConfig();
    bad.patch(config);
    const path = await writeConfig(t, config);
    const { code, stderr } = await runCli(t, ['rafka', '-c', path, '--port', '0', '--no-metrics']);
    t.equal(code, 1, bad.name);
    t.match(stderr, `config ${path}: ${bad.line}`, bad.name);
    t.notMatch(stderr, /Listening on/);
  }
  const empty = await runCli(t, ['rafka', '-c', '', '--port', '0']);
  t.equal(empty.code, 1);
  t.match(empty.stderr, 'No librdkafka configuration provided');
  const badFlag = await runCli(t, ['rafka', '--port', 'abc']);
  t.equal(badFlag.code, 1);
  t.match(badFlag.stderr, 'abc');
});

t.test(
  'the shipped config boots with the packaging flags and stops within the bound',
  async (t) => {
    JSON.parse(await readFile(SHIPPED_CONFIG, 'utf8'));
    const cli = spawnCli(t, [
      'rafka',
      '--config',
      SHIPPED_CONFIG,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--metrics-host',
      '127.0.0.1',
      '--metrics-port',
      '0',
    ]);
    await cli.waitForLine(/Listening on /);
    const started = Date.now();
    const code = await cli.stop('SIGTERM', 12_000);
    t.equal(code, 0, 'exit 0 with nothing buffered', { output: cli.output().slice(-3000) });
    t.ok(Date.now() - started < 9000, `stopped in ${Date.now() - started} ms`);
  },
);

t.test(
  'metrics: every name exists and moves during a produce, consume and ack round',
  async (t) => {
    const rafka = await startRafka(t);
    const [topic] = (await createTopics(t, 1, 1)) as [string];
    const c = await RawClient.open(t, rafka.port);
    await c.call('CLIENT', 'SETNAME', `${uniqueId('m')}:x`);
    t.equal(await c.call('RPUSHX', `topics:${topic}`, 'metric'), 1);
    t.equal(await c.call('DUMP', '5000'), 0);
    let reply: unknown = null;
    for (let i = 0; i < 20 && reply === null; i++)
      reply = await c.call('BLPOP', `topics:${topic}`, '1');
    t.ok(Array.isArray(reply));
    t.equal(await c.call('RPUSH', 'acks', `${topic}:0:0`), 1);
    c.write('*1\r\n$1\r\n');
    c.write('x');
    const text = await scrape(rafka.metricsPort);
    const names = [
      'rafka_build_info',
      'rafka_connections',
      'rafka_connections_accepted_total',
      'rafka_commands_total',
      'rafka_command_duration_seconds_bucket',
      'rafka_kafka_clients',
      'rafka_producer_accepted_messages_total',
      'rafka_producer_accepted_bytes_total',
      'rafka_producer_delivered_messages_total',
      'rafka_producer_buffered_messages',
      'rafka_producer_buffered_bytes',
      'rafka_producer_delivery_seconds_bucket',
      'rafka_producer_batch_messages_bucket',
      'rafka_producer_unflushed_messages_total',
      'rafka_producer_unknown_events_total',
      'rafka_consumers',
      'rafka_consumer_assigned_partitions',
      'rafka_consumer_buffered_messages',
      'rafka_consumer_registrations_total',
      'rafka_consumer_messages_total',
      'rafka_blpop_timeouts_total',
      'rafka_rebalances_total',
      'rafka_acks_total',
      'rafka_monitors',
      'rafka_monitor_dropped_lines_total',
      'rafka_shutting_down',
    ];
    for (const name of names) t.not(metricValue(text, name), undefined, name);
    t.equal(metricValue(text, 'rafka_producer_accepted_messages_total'), 1);
    t.equal(metricValue(text, 'rafka_producer_delivered_messages_total', `topic="${topic}"`), 1);
    t.equal(metricValue(text, 'rafka_consumer_messages_total', `topic="${topic}"`), 1);
    t.equal(metricValue(text, 'rafka_acks_total', 'outcome="stored"'), 1);
    t.equal(metricValue(text, 'rafka_consumers'), 1);
    t.equal(metricValue(text, 'rafka_commands_total', 'command="rpushx",outcome="ok"'), 1);
    const notFound = await fetch(`http://127.0.0.1:${rafka.metricsPort}/nope`);
    t.equal(notFound.status, 404);
  },
);

async function blpopMessage(c: RawClient, key: string): Promise<unknown[]> {
  for (let i = 0; i < 30; i++) {
    const reply = await c.call('BLPOP', key, '1');
    if (Array.isArray(reply)) return reply;
  }
  throw new Error('no message within 30 BLPOPs');
}

t.test('SIGTERM with consumers and producers: order, no acked message lost, exit 0', async (t) => {
  const rafka = await startRafka(t, {
    args: ['--shutdown-timeout', '8000', '--flush-timeout', '2000'],
  });
  const [idle, acked, produced] = (await createTopics(t, 3, 1)) as [string, string, string];
  await produceDirect(
    acked,
    ['a0', 'a1', 'a2'].map((value) => ({ value })),
  );
  const waiting = await RawClient.open(t, rafka.port);
  await waiting.call('CLIENT', 'SETNAME', `${uniqueId('stop')}:w`);
  t.equal(await waiting.call('BLPOP', `topics:${idle}`, '0.5'), null);
  const ackGroup = uniqueId('acks');
  const acker = await RawClient.open(t, rafka.port);
  await acker.call('CLIENT', 'SETNAME', `${ackGroup}:a`);
  for (const offset of [0, 1]) {
    const m = await blpopMessage(acker, `topics:${acked}`);
    t.equal(m[5], offset);
    t.equal(await acker.call('RPUSH', 'acks', `${acked}:0:${offset}`), 1);
  }
  const producers = await Promise.all([0, 1, 2].map(() => RawClient.open(t, rafka.port)));
  for (const [i, p] of producers.entries()) {
    t.equal(await p.call('RPUSHX', `topics:${produced}`, `before-${i}`), 1);
  }
  waiting.write(encodeCommand(['BLPOP', `topics:${idle}`, '5']));
  await new Promise((r) => setTimeout(r, 200));
  const started = Date.now();
  const stopped = rafka.cli.stop('SIGTERM', 15_000);
  // The waiting BLPOP gets the shutdown error, then its connection closes.
  t.same(await waiting.read(5000), new Error('CONS Server shutdown'));
  await waiting.waitClosed();
  // A new connection in the consumer phase gets the shutdown error on BLPOP.
  const late = await RawClient.open(t, rafka.port).catch(() => undefined);
  if (late) {
    const named = await late.call('CLIENT', 'SETNAME', `${uniqueId('late')}:x`).catch(() => null);
    if (named === 'OK') {
      t.same(await late.call('BLPOP', `topics:${idle}`, '1'), new Error('CONS Server shutdown'));
    }
  }
  // Producers keep producing while they are served; every :1 must end up in Kafka.
  const accepted = ['before-0', 'before-1', 'before-2'];
  for (const [i, p] of producers.entries()) {
    const reply = await p.call('RPUSHX', `topics:${produced}`, `during-${i}`).catch(() => null);
    if (reply === 1) accepted.push(`during-${i}`);
  }
  t.equal(await stopped, 0, 'exit 0');
  t.ok(Date.now() - started < 9000, `exited in ${Date.now() - started} ms`);
  t.match(rafka.cli.output(), /rafka stopped/);
  const records = await readTopic(produced, accepted.length, 8000);
  t.same(
    new Set(records.map((r) => r.value)),
    new Set(accepted),
    'every accepted message is in Kafka',
  );
  // Acks made before the signal were committed: a restarted server resumes after them.
  const again = await startRafka(t);
  const resumed = await RawClient.open(t, again.port);
  await resumed.call('CLIENT', 'SETNAME', `${ackGroup}:a`);
  const m = await blpopMessage(resumed, `topics:${acked}`);
  t.equal(m[5], 2, 'resumes at offset 2');
  t.equal(m[7], 'a2');
});

t.test(
  'with the broker unresponsive, SIGTERM exits 1 within T + 1 s and logs the leftovers',
  async (t) => {
    // A listener that accepts and never answers stands in for a SIGSTOPped broker here; the
    // real one, a private broker that is paused, is in broker-outage.ts.
    const { createServer } = await import('node:net');
    const sockets = new Set<import('node:net').Socket>();
    const hole = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const s of sockets) s.destroy();
      hole.close();
    });
    const port = (hole.address() as import('node:net').AddressInfo).port;
    const path = await writeConfig(t, testConfig());
    const cli = spawnCli(t, [
      'rafka',
      '-c',
      path,
      '-b',
      `127.0.0.1:${port}`,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--no-metrics',
      '--shutdown-timeout',
      '2000',
    ]);
    const line = await cli.waitForLine(/Listening on /);
    const c = await RawClient.open(
      t,
      Number((JSON.parse(line) as { listen: string }).listen.split(':')[1]),
    );
    t.equal(
      await c.call('RPUSHX', 'topics:somewhere', 'a'),
      1,
      'accepted while Kafka is unreachable',
    );
    t.equal(await c.call('RPUSHX', 'topics:somewhere', 'b'), 1);
    t.equal(await c.call('DUMP', '200'), 2, 'DUMP reports both outstanding after its timeout');
    const started = Date.now();
    const code = await cli.stop('SIGTERM', 10_000);
    const took = Date.now() - started;
    t.equal(code, 1);
    t.ok(took < 3000, `exited in ${took} ms`);
    t.match(cli.output(), /"unflushed":2/);
  },
);
