/**
 * A private single-node KRaft broker for tests that stop, restart or pause Kafka: the shared
 * broker on 9092 must never be touched. It runs from the jars `scripts/services.sh up kafka`
 * cached, with the same server.properties template, on free loopback ports and a temp data dir.
 * Teardown always kills it, and a watchdog kills it too should the test process die first. A
 * class-data archive in the temp dir (about 45 MB, made by the first clean stop) halves later
 * boots.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { eventually, freePort } from './net.js';
import { createTopicsReady } from './services.js';

const REPO = resolve(import.meta.dirname, '../..');
const CONF_DIR = join(REPO, 'scripts/kafka');
/** Where scripts/services.sh caches the jars of scripts/kafka/pom.xml. */
const LIBS = join(
  process.env.SKROUTZ_SERVICES_DIR ?? '/var/tmp/skroutz-infra-services',
  'kafka-libs',
);

/** A small heap and a JIT that starts fast: a test broker moves a few thousand messages. */
const JVM_OPTIONS = [
  '-Xms128m',
  '-Xmx512m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Djava.awt.headless=true',
];

/** Appended to the shared template; a later key wins in a Java properties file. */
const OVERRIDES = ['num.network.threads=2', 'num.io.threads=2', 'log.cleaner.enable=false'];

const BOOT_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;

/** Whatever ends the broker's life: a tap test, or a bench's own list of clean-ups. */
export interface Owner {
  teardown(fn: () => unknown): void;
}

export interface TopicRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: string | null;
}

export interface PrivateKafka {
  /** `127.0.0.1:<port>`, for kafkajs and for rafka's `-b`. */
  readonly brokers: string[];
  readonly dir: string;
  /** How long the storage format took (once, before the first start). */
  readonly formatMs: number;
  /** How long the last start took until the broker answered an admin request. */
  readonly lastBootMs: number;
  /** A kafkajs client of this broker; the caller connects and disconnects what it makes. */
  client(): Kafka;
  /** Creates topics and waits for their leaders. */
  createTopics(topics: string[], partitions?: number): Promise<void>;
  /**
   * Reads `topic` from the beginning in a fresh group until `done(records)` holds, counting each
   * offset once; throws with the broker's log after `timeoutMs`.
   */
  read(
    topic: string,
    done: (records: readonly TopicRecord[]) => boolean,
    timeoutMs?: number,
  ): Promise<TopicRecord[]>;
  /** SIGTERM and wait for the exit (SIGKILL after a minute). */
  stop(): Promise<void>;
  /** Starts again on the same ports and data dir and waits until it answers. */
  start(): Promise<void>;
  /** SIGSTOP: the broker keeps its sockets open and answers nothing. */
  pause(): void;
  /** SIGCONT; harmless when the broker runs or has exited, so a teardown may always call it. */
  resume(): void;
  /** The end of the broker's server.log, for failure messages. */
  logTail(lines?: number): string;
}

function findLibs(): string {
  const jars = existsSync(LIBS) ? readdirSync(LIBS) : [];
  if (!jars.some((name) => /^kafka_2\.\d+-.*\.jar$/.test(name)))
    throw new Error(
      `no Kafka jars in ${LIBS}: run scripts/services.sh up kafka once to cache them`,
    );
  return join(LIBS, '*');
}

/**
 * Class-data sharing: the first broker that exits cleanly dumps the classes it loaded, and later
 * JVMs map that archive instead of reading the jars again, which halves a boot. The name hashes
 * the jar listing, so new jars get a new archive; the JVM checks the rest (its own version, the
 * class path) and runs without an archive that does not match (-Xshare:auto).
 */
function classArchive(): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(LIBS).sort()) {
    const { size, mtimeMs } = statSync(join(LIBS, name));
    hash.update(`${name} ${size} ${mtimeMs}\n`);
  }
  return join(tmpdir(), `skroutz-private-kafka-${hash.digest('hex').slice(0, 16)}.jsa`);
}

/** The options that map the archive, or (`dumpTo` given) record one when there is none yet. */
function sharingOptions(archive: string, dumpTo?: string): string[] {
  if (existsSync(archive)) return ['-Xshare:auto', `-XX:SharedArchiveFile=${archive}`];
  return dumpTo === undefined ? [] : [`-XX:ArchiveClassesAtExit=${dumpTo}`];
}

/** Publishes a freshly dumped archive; a rename, so a JVM never maps a half-written file. */
function keepArchive(dumped: string, archive: string): void {
  try {
    if (existsSync(dumped) && !existsSync(archive)) renameSync(dumped, archive);
  } catch {
    // Another test published one first, or tmp is read-only: the next boot is just slower.
  }
}

/**
 * A random cluster id in Kafka's format: 16 bytes, URL-safe base64 without padding, and never
 * starting with '-' (as Kafka's own): the storage tool read one such id in 64 as an option, and
 * the format failed with "argument --cluster-id/-t: expected one argument".
 */
export function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function writeProperties(dir: string, port: number, controllerPort: number): string {
  const template = readFileSync(join(CONF_DIR, 'server.properties'), 'utf8');
  const text = template
    .replaceAll('@KAFKA_PORT@', String(port))
    .replaceAll('@KAFKA_CONTROLLER_PORT@', String(controllerPort))
    .replaceAll('@KAFKA_DATA_DIR@', join(dir, 'data'));
  const path = join(dir, 'server.properties');
  writeFileSync(path, `${text}\n# private-kafka.ts\n${OVERRIDES.join('\n')}\n`);
  return path;
}

/** Formats the data dir as services.sh does; its pid goes to kafka.pid for the watchdog. */
async function format(
  dir: string,
  classpath: string,
  properties: string,
  archive: string,
): Promise<void> {
  const child = spawn(
    'java',
    [
      ...JVM_OPTIONS,
      ...sharingOptions(archive),
      `-Dlog4j.configuration=file:${join(CONF_DIR, 'tools-log4j.properties')}`,
      '-cp',
      classpath,
      'kafka.tools.StorageTool',
      'format',
      `--cluster-id=${clusterId()}`,
      '-c',
      properties,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  writeFileSync(join(dir, 'kafka.pid'), String(child.pid ?? ''));
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code, error] = await new Promise<[number | null, Error | undefined]>((done) => {
    child.once('error', (err) => done([null, err]));
    child.once('close', (status) => done([status, undefined]));
  });
  if (error !== undefined)
    throw new Error(`cannot run java (scripts/services.sh install): ${error.message}`);
  if (code !== 0) throw new Error(`kafka storage format failed (${code}): ${output}`);
}

/**
 * Kills the broker if this test process dies without its teardown (a tap timeout, a crash). It
 * checks the pid's command line first, so a recycled pid is left alone.
 */
function startWatchdog(dir: string): ChildProcess {
  const script = [
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 2; done`,
    `pid=$(cat "$1/kafka.pid" 2>/dev/null)`,
    `[ -n "$pid" ] && grep -qF "$1" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"`,
    `sleep 1; rm -rf "$1"`,
  ].join('\n');
  const watchdog = spawn('sh', ['-c', script, 'watchdog', dir], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
  return watchdog;
}

/** Boots a private broker; it lives until the end of `t` (use the file's root test to share it). */
export async function privateKafka(t: Owner): Promise<PrivateKafka> {
  const classpath = findLibs();
  const archive = classArchive();
  const dir = mkdtempSync(join(tmpdir(), 'private-kafka-'));
  const dumped = join(dir, 'classes.jsa');
  const watchdog = startWatchdog(dir);
  const port = await freePort();
  const controllerPort = await freePort();
  const brokers = [`127.0.0.1:${port}`];
  const properties = writeProperties(dir, port, controllerPort);
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  /** Set when java itself cannot be spawned (read through a call: it changes in a callback). */
  const spawned: { error?: Error } = {};
  const spawnError = (): Error | undefined => spawned.error;
  let formatMs = 0;
  let lastBootMs = 0;

  const alive = (): boolean =>
    child !== undefined &&
    spawnError() === undefined &&
    child.exitCode === null &&
    child.signalCode === null;

  const client = (): Kafka =>
    new Kafka({
      clientId: 'private-kafka-test',
      brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: 3000,
      requestTimeout: 10_000,
      retry: { retries: 2, initialRetryTime: 200 },
    });

  const logTail = (lines = 30): string => {
    for (const file of [join(dir, 'logs', 'server.log'), join(dir, 'kafka.out')]) {
      try {
        const text = readFileSync(file, 'utf8').trimEnd().split('\n');
        if (text.length > 1) return text.slice(-lines).join('\n');
      } catch {
        // not written yet
      }
    }
    return '(no broker output)';
  };

  /** Ready means the broker answers metadata and names a controller. */
  const answers = async (): Promise<boolean> => {
    const admin = client().admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return cluster.brokers.length > 0 && cluster.controller !== null;
    } finally {
      await admin.disconnect();
    }
  };

  const start = async (): Promise<void> => {
    if (alive()) throw new Error('private kafka is already running');
    const started = performance.now();
    const out = openSync(join(dir, 'kafka.out'), 'a');
    child = spawn(
      'java',
      [
        ...JVM_OPTIONS,
        ...sharingOptions(archive, dumped),
        `-Dkafka.logs.dir=${join(dir, 'logs')}`,
        `-Dlog4j.configuration=file:${join(CONF_DIR, 'log4j.properties')}`,
        '-cp',
        classpath,
        'kafka.Kafka',
        properties,
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    const current = child;
    spawned.error = undefined;
    exited = once(current, 'exit');
    current.on('error', (err) => (spawned.error = err));
    writeFileSync(join(dir, 'kafka.pid'), String(current.pid ?? ''));
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    for (;;) {
      const error = spawnError();
      if (error !== undefined)
        throw new Error(`cannot run java: ${error.message}`, { cause: error });
      if (!alive()) throw new Error(`private kafka exited during start-up:\n${logTail()}`);
      if (await answers().catch(() => false)) break;
      if (Date.now() > deadline)
        throw new Error(`private kafka did not answer within ${BOOT_TIMEOUT_MS} ms:\n${logTail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    lastBootMs = Math.round(performance.now() - started);
  };

  const signal = (name: NodeJS.Signals): void => {
    if (!alive()) throw new Error(`private kafka is not running (${name})`);
    child?.kill(name);
  };

  const stop = async (): Promise<void> => {
    if (!alive()) return;
    // A stopped JVM handles SIGTERM only once it runs again.
    child?.kill('SIGCONT');
    child?.kill('SIGTERM');
    const timer = setTimeout(() => child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    keepArchive(dumped, archive);
  };

  t.teardown(async () => {
    if (alive()) {
      child?.kill('SIGKILL');
      await exited;
    }
    watchdog.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const formatStarted = performance.now();
  await format(dir, classpath, properties, archive);
  formatMs = Math.round(performance.now() - formatStarted);
  await start();

  return {
    brokers,
    dir,
    get formatMs() {
      return formatMs;
    },
    get lastBootMs() {
      return lastBootMs;
    },
    client,
    async createTopics(topics, partitions = 1) {
      const admin = client().admin();
      await admin.connect();
      try {
        await createTopicsReady(
          admin,
          topics.map((topic) => ({ topic, numPartitions: partitions })),
        );
      } finally {
        await admin.disconnect();
      }
    },
    read: (topic, done, timeoutMs = 60_000) => readTopic(client(), topic, done, timeoutMs, logTail),
    stop,
    start,
    pause: () => signal('SIGSTOP'),
    resume: () => {
      if (alive()) child?.kill('SIGCONT');
    },
    logTail,
  };
}

async function readTopic(
  kafka: Kafka,
  topic: string,
  done: (records: readonly TopicRecord[]) => boolean,
  timeoutMs: number,
  logTail: () => string,
): Promise<TopicRecord[]> {
  const consumer = kafka.consumer({
    groupId: `private-kafka-reader-${randomBytes(6).toString('hex')}`,
    sessionTimeout: 10_000,
  });
  const records: TopicRecord[] = [];
  // A rebalance right after joining re-delivers from the last commit: keep each offset once.
  const seen = new Set<string>();
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const at = `${partition}:${message.offset}`;
        if (seen.has(at)) return;
        seen.add(at);
        records.push({
          partition,
          offset: message.offset,
          key: message.key === null ? null : message.key.toString('latin1'),
          value: message.value === null ? null : message.value.toString('latin1'),
        });
        await Promise.resolve();
      },
    });
    await eventually(() => done(records), timeoutMs, 100).catch(() => {
      throw new Error(
        `${topic}: reading stopped at ${records.length} records after ${timeoutMs} ms; ` +
          `broker log:\n${logTail()}`,
      );
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}
