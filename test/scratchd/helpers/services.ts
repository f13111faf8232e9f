/**
 * Private backends for sink tests: a redis-server of our own on a free loopback port (so a test
 * can stop and restart it), Kafka topics with chosen names, and the project's rafka.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Test } from 'tap';
import { spawnCli, type RunningCli } from '../../helpers/cli.js';
import { eventually, freePort } from '../../helpers/net.js';
import { KAFKA_BROKERS, createTopicsReady, kafkaClient } from '../../helpers/services.js';

export interface OwnRedis {
  port: number;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  client(): Redis;
}

/** A redis-server child on a free port; `stop` kills it, `start` boots it again on that port. */
export async function ownRedis(t: Test, dir: string): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const clients: Redis[] = [];
  const start = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        // An append-only file fsync'd per write, so a killed server keeps what it acked.
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--dir',
        dir,
      ],
      { stdio: 'ignore' },
    );
    const probe = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => undefined);
    await eventually(
      async () => {
        try {
          await probe.connect();
        } catch {
          // not up yet
        }
        return (await probe.ping()) === 'PONG';
      },
      10_000,
      50,
    );
    probe.disconnect();
  };
  const stop = async (): Promise<void> => {
    if (child === undefined || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  };
  t.teardown(async () => {
    for (const c of clients) c.disconnect();
    await stop();
  });
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    client: () => {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
  };
}

/** Creates the named topics and deletes them in teardown. */
export async function createTopics(
  t: Test,
  topics: {
    topic: string;
    configEntries?: { name: string; value: string }[];
    numPartitions?: number;
  }[],
): Promise<void> {
  const admin = kafkaClient().admin();
  await admin.connect();
  await createTopicsReady(
    admin,
    topics.map((x) => ({ numPartitions: 1, ...x })),
  );
  t.teardown(async () => {
    await admin
      .deleteTopics({ topics: topics.map((x) => x.topic), timeout: 10_000 })
      .catch(() => undefined);
    await admin.disconnect();
  });
}

/** Reads a topic from the beginning until `count` messages arrived or the time is up. */
export async function consumeTopic(
  topic: string,
  count: number,
  timeoutMs = 30_000,
): Promise<{ key: string | null; value: string; partition: number; offset: string }[]> {
  // A fresh group per read, so each read starts at the beginning; deleted afterwards.
  const groupId = `scratchd-test-${topic}-${Math.random().toString(36).slice(2)}`;
  const consumer = kafkaClient().consumer({ groupId, sessionTimeout: 10_000 });
  await consumer.connect();
  const out: { key: string | null; value: string; partition: number; offset: string }[] = [];
  // A rebalance right after joining re-delivers from the last commit: count each offset once.
  const seen = new Set<string>();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        if (seen.has(`${partition}:${message.offset}`)) return;
        seen.add(`${partition}:${message.offset}`);
        out.push({
          key: message.key?.toString() ?? null,
          value: message.value?.toString() ?? '',
          partition,
          offset: message.offset,
        });
        await Promise.resolve();
      },
    });
    await eventually(() => out.length >= count, timeoutMs, 100);
  } finally {
    await consumer.disconnect();
    const admin = kafkaClient().admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
  return out;
}

export interface Rafka {
  cli: RunningCli;
  url: string;
}

/**
 * Starts the project's rafka in front of the shared Kafka (or of `brokers`, such as a private
 * broker's); undefined when it is not built yet.
 */
export async function startRafka(
  t: Test,
  dir: string,
  brokers: readonly string[] = KAFKA_BROKERS,
): Promise<Rafka | { notBuilt: string }> {
  const config = join(dir, 'librdkafka.json');
  writeFileSync(
    config,
    JSON.stringify({
      general: { 'bootstrap.servers': brokers.join(',') },
      producer: { 'linger.ms': 5 },
    }),
  );
  const cli = spawnCli(t, [
    'rafka',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--config',
    config,
    '--no-metrics',
  ]);
  const started = await Promise.race([
    cli.waitForLine(/Listening on /, 20_000).then((line) => ({ line })),
    cli.exited(20_000).then((code) => ({ code })),
  ]);
  if ('code' in started) {
    if (started.code === 3 && /not built yet/.test(cli.output()))
      return { notBuilt: 'rafka is not built yet in this tree' };
    throw new Error(`rafka exited with ${started.code}: ${cli.output()}`);
  }
  const match = /Listening on ([^\s"]+):(\d+)/.exec(started.line);
  if (match === null) throw new Error(`no port in ${started.line}`);
  return { cli, url: `redis://${match[1]}:${match[2]}` };
}
