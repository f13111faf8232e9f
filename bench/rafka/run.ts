/**
 * rafka benchmarks (spec §7): each figure is measured against a baseline taken in the same run on
 * the same broker with fresh topics. rafka runs as the built executable; the RESP load is
 * pre-encoded before the clock starts. Writes a JSON report to dist/bench-rafka.json and prints
 * it. Counts can be scaled down with RAFKA_BENCH_SCALE (default 1) to keep the run short, and
 * RAFKA_BENCH_ONLY (comma-separated step names, e.g. `consumeThroughput`) runs only some steps.
 *
 *   TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import bench/rafka/run.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';

const EXECUTABLE = resolve(import.meta.dirname, '../../dist/skroutz-infra');
const BROKERS = (process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const SCALE = Number(process.env.RAFKA_BENCH_SCALE ?? '1');
const n = (count: number): number => Math.max(1, Math.round(count * SCALE));

const kafka = new Kafka({ clientId: 'rafka-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });
const admin = kafka.admin();
const createdTopics: string[] = [];

async function freshTopic(partitions: number): Promise<string> {
  const topic = `bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await admin.createTopics({
    topics: [{ topic, numPartitions: partitions }],
    waitForLeaders: true,
  });
  createdTopics.push(topic);
  return topic;
}

function command(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** A minimal RESP client that counts replies and returns the last one's first line. */
class Client {
  private buffer = '';
  private waiters: { count: number; resolve: (lines: string[]) => void }[] = [];
  private lines: string[] = [];

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.parse();
    });
  }

  static open(port: number): Promise<Client> {
    return new Promise((res, rej) => {
      const socket = connect(port, '127.0.0.1', () => res(new Client(socket)));
      socket.once('error', rej);
    });
  }

  /** Simple, error, integer, bulk and null replies, 8-element BLPOP replies; no other arrays. */
  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end === -1) return;
      const head = this.buffer.slice(0, end);
      if (head.startsWith('*8')) {
        // Skip 8 elements: 4 bulks and integers, fully present?
        let pos = end + 2;
        let ok = true;
        let value = '';
        for (let i = 0; i < 8 && ok; i++) {
          const e = this.buffer.indexOf('\r\n', pos);
          if (e === -1) {
            ok = false;
            break;
          }
          const line = this.buffer.slice(pos, e);
          if (line.startsWith('$') && line !== '$-1') {
            const len = Number(line.slice(1));
            if (this.buffer.length < e + 2 + len + 2) {
              ok = false;
              break;
            }
            if (i === 1 || i === 3 || i === 5) value += `${this.buffer.slice(e + 2, e + 2 + len)}:`;
            pos = e + 2 + len + 2;
          } else {
            if (i === 3 || i === 5) value += `${line.slice(1)}:`;
            pos = e + 2;
          }
        }
        if (!ok) return;
        this.buffer = this.buffer.slice(pos);
        this.push(`*8 ${value}`);
        continue;
      }
      if (head.startsWith('$') && head !== '$-1') {
        const len = Number(head.slice(1));
        if (this.buffer.length < end + 2 + len + 2) return;
        const body = this.buffer.slice(end + 2, end + 2 + len);
        this.buffer = this.buffer.slice(end + 2 + len + 2);
        this.push(body);
        continue;
      }
      this.buffer = this.buffer.slice(end + 2);
      this.push(head);
    }
  }

  private push(line: string): void {
    this.lines.push(line);
    const waiter = this.waiters[0];
    if (waiter && this.lines.length >= waiter.count) {
      this.waiters.shift();
      waiter.resolve(this.lines.splice(0, waiter.count));
    }
  }

  replies(count: number): Promise<string[]> {
    if (this.lines.length >= count) return Promise.resolve(this.lines.splice(0, count));
    return new Promise((res) => this.waiters.push({ count, resolve: res }));
  }

  async call(args: (string | Buffer)[]): Promise<string> {
    this.socket.write(command(args));
    return (await this.replies(1))[0];
  }

  close(): void {
    this.socket.destroy();
  }
}

interface Rafka {
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
  rssKiB(): Promise<number>;
}

async function startRafka(dir: string): Promise<Rafka> {
  const config = join(dir, 'librdkafka.json');
  await writeFile(
    config,
    JSON.stringify({
      general: { 'bootstrap.servers': BROKERS.join(','), 'session.timeout.ms': 6000, log_level: 3 },
      consumer: { 'auto.offset.reset': 'earliest', 'auto.commit.interval.ms': 1000 },
      producer: {},
    }),
  );
  const child = spawn(
    EXECUTABLE,
    ['rafka', '-c', config, '--host', '127.0.0.1', '--port', '0', '--no-metrics'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: process.env },
  );
  const port = await new Promise<number>((res, rej) => {
    let text = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m = /Listening on [^:]+:(\d+)/.exec(text);
      if (m) res(Number(m[1]));
    });
    child.once('exit', () => rej(new Error(`rafka exited: ${text}`)));
  });
  return {
    child,
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
    rssKiB: async () => {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

/**
 * 100,000 × 1 KiB through kafkajs directly and through rafka, alternating three times on fresh
 * topics: the broker shares the machine's cores, and one pair of legs swings by ±15 %. The ratio
 * is of the median rates.
 */
async function produceThroughput(rafka: Rafka) {
  const count = n(100_000);
  const value = randomBytes(512).toString('hex'); // 1 KiB
  const messages = Array.from({ length: 1000 }, () => ({ value }));
  const baselines: number[] = [];
  const rates: number[] = [];
  let dump = '';
  for (let round = 0; round < 3; round++) {
    // Baseline: kafkajs directly, batches of 1,000 in sequential sends.
    const baseTopic = await freshTopic(1);
    const producer = kafka.producer();
    await producer.connect();
    let started = performance.now();
    for (let sent = 0; sent < count; sent += 1000)
      await producer.send({ topic: baseTopic, messages });
    baselines.push(count / ((performance.now() - started) / 1000));
    await producer.disconnect();
    // rafka: one connection, 1,000 RPUSHX in flight, then DUMP 60000.
    const topic = await freshTopic(1);
    const frame = command(['RPUSHX', `topics:${topic}`, value]);
    const window = Buffer.concat(Array.from({ length: 1000 }, () => frame));
    const c = await Client.open(rafka.port);
    started = performance.now();
    for (let sent = 0; sent < count; sent += 1000) {
      c.socket.write(window);
      await c.replies(1000);
    }
    dump = await c.call(['DUMP', '60000']);
    rates.push(count / ((performance.now() - started) / 1000));
    c.close();
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1] ?? 0;
  return {
    messages: count,
    baselineMsgsPerS: baselines.map(Math.round),
    rafkaMsgsPerS: rates.map(Math.round),
    ratio: +(median(rates) / median(baselines)).toFixed(3),
    bar: 0.8,
    dump,
  };
}

/**
 * The consume leg's load: BLPOP, and once a message arrives its ack pipelined with the next BLPOP,
 * until `count` messages came. Replies are parsed from the socket's Buffers and the next request
 * is written from the data callback, so the generator stays far cheaper than the server. Returns
 * when the first and the last message arrived.
 */
function blpopLoop(
  socket: Socket,
  key: string,
  count: number,
): Promise<{ first: number; last: number }> {
  const blpop = command(['BLPOP', key, '5']).toString('latin1');
  const ackHead = '*3\r\n$5\r\nRPUSH\r\n$4\r\nacks\r\n';
  socket.removeAllListeners('data');
  socket.setEncoding('latin1');
  return new Promise((resolve) => {
    let buffer = '';
    let expected = 1;
    let seen = 0;
    let got = 0;
    let first = 0;
    let ack = '';
    socket.on('data', (chunk: string) => {
      buffer = buffer.length === 0 ? chunk : buffer + chunk;
      let at = 0;
      for (;;) {
        const reply = parseReply(buffer, at);
        if (!reply) break;
        at = reply.end;
        if (++seen < expected) continue;
        seen = 0;
        if (reply.message === undefined) {
          expected = 1;
          socket.write(blpop, 'latin1');
          continue;
        }
        got += 1;
        const now = performance.now();
        if (got === 1) first = now;
        if (got === count) return resolve({ first, last: now });
        ack = reply.message;
        expected = 2;
        socket.write(`${ackHead}$${ack.length}\r\n${ack}\r\n${blpop}`, 'latin1');
      }
      buffer = at === buffer.length ? '' : buffer.slice(at);
    });
    socket.write(blpop, 'latin1');
  });
}

/**
 * One reply from `at`: its end, and for a BLPOP message its `topic:partition:offset`. Simple,
 * error, integer, bulk, null and arrays of bulks and integers; undefined while incomplete.
 */
function parseReply(text: string, at: number): { end: number; message?: string } | undefined {
  const eol = text.indexOf('\r\n', at);
  if (eol === -1) return undefined;
  const type = text[at];
  if (type === '$') {
    const length = Number(text.slice(at + 1, eol));
    if (length < 0) return { end: eol + 2 };
    return text.length < eol + 2 + length + 2 ? undefined : { end: eol + 2 + length + 2 };
  }
  if (type !== '*') return { end: eol + 2 };
  const items = Number(text.slice(at + 1, eol));
  let pos = eol + 2;
  const fields: string[] = [];
  // A rafka BLPOP reply has 8 items and the ack needs the first 6; redis-server's has 2 (key,
  // value) and the key is enough.
  const keep = items === 2 ? 1 : 6;
  for (let i = 0; i < items; i++) {
    const itemEol = text.indexOf('\r\n', pos);
    if (itemEol === -1) return undefined;
    if (text[pos] === '$' && text[pos + 1] !== '-') {
      const length = Number(text.slice(pos + 1, itemEol));
      if (text.length < itemEol + 2 + length + 2) return undefined;
      if (i < keep) fields.push(text.slice(itemEol + 2, itemEol + 2 + length));
      pos = itemEol + 2 + length + 2;
    } else {
      if (i < keep) fields.push(text.slice(pos + 1, itemEol));
      pos = itemEol + 2;
    }
  }
  // rafka: `topic <t> partition <p> offset <o> value <v>`; redis-server: `<key> <value>`.
  const message =
    items === 8
      ? `${fields[1]}:${fields[3]}:${fields[5]}`
      : items === 2
        ? `${fields[0]}:0:0`
        : undefined;
  return { end: pos, message };
}

async function consumeThroughput(rafka: Rafka) {
  const count = n(50_000);
  const topic = await freshTopic(4);
  const producer = kafka.producer();
  await producer.connect();
  const value = randomBytes(512).toString('hex');
  for (let sent = 0; sent < count; sent += 1000) {
    await producer.send({
      topic,
      messages: Array.from({ length: 1000 }, (_v, i) => ({ value, partition: (sent + i) % 4 })),
    });
  }
  await producer.disconnect();
  // Baseline: a kafkajs consumer, fresh group, no-op eachMessage, with the settings rafka maps
  // from the bench's config file and its defaults (fetch.wait.max.ms 100, fetch.max.bytes 50 MiB).
  const consumer = kafka.consumer({
    groupId: `bench-base-${Date.now()}`,
    sessionTimeout: 6000,
    heartbeatInterval: 3000,
    rebalanceTimeout: 300_000,
    metadataMaxAge: 300_000,
    maxWaitTimeInMs: 100,
    minBytes: 1,
    maxBytes: 52_428_800,
    maxBytesPerPartition: 1_048_576,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  let started = 0;
  const done = new Promise<void>((res) => {
    void consumer.run({
      eachMessage: async () => {
        if (seen === 0) started = performance.now();
        if (++seen === count) res();
      },
    });
  });
  await done;
  process.stderr.write('consume baseline done\n');
  const baseline = count / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  // rafka: BLPOP + ack, the ack of k pipelined with the BLPOP of k+1.
  const c = await Client.open(rafka.port);
  await c.call(['CLIENT', 'SETNAME', `bench-${Date.now()}:c`]);
  const { first, last } = await blpopLoop(c.socket, `topics:${topic}`, count);
  const rate = (count - 1) / ((last - first) / 1000);
  c.close();
  const ceiling = await redisServerCeiling(count, value);
  return {
    messages: count,
    baselineMsgsPerS: Math.round(baseline),
    rafkaMsgsPerS: Math.round(rate),
    ratio: +(rate / baseline).toFixed(3),
    bar: 0.5,
    ...(ceiling === undefined
      ? {}
      : {
          redisServerMsgsPerS: Math.round(ceiling),
          rafkaToRedisServer: +(rate / ceiling).toFixed(3),
        }),
  };
}

/**
 * The same BLPOP+ack loop against a private redis-server holding the same values in a list: the
 * rate one connection's round trips allow on this machine when the server does no Kafka work.
 * Reported beside the ratio, not part of the bar; undefined when redis-server is not installed.
 */
async function redisServerCeiling(count: number, value: string): Promise<number | undefined> {
  const port = await new Promise<number>((res, rej) => {
    const probe = createServer();
    probe.once('error', rej);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as AddressInfo;
      probe.close(() => res(free));
    });
  });
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const spawned = await new Promise<boolean>((res) => {
    child.once('spawn', () => res(true));
    child.once('error', () => res(false));
  });
  if (!spawned) return undefined;
  try {
    let c: Client | undefined;
    for (let attempt = 0; c === undefined; attempt++) {
      c = await Client.open(port).catch(async (err: unknown) => {
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
        return undefined;
      });
    }
    const push = command(['RPUSH', 'bench', value]);
    for (let sent = 0; sent < count; sent += 1000) {
      const n = Math.min(1000, count - sent);
      c.socket.write(Buffer.concat(Array.from({ length: n }, () => push)));
      await c.replies(n);
    }
    const { first, last } = await blpopLoop(c.socket, 'bench', count);
    c.close();
    return (count - 1) / ((last - first) / 1000);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

async function connectionChurn(rafka: Rafka) {
  const rounds = n(2000);
  const topic = await freshTopic(1);
  await (await Client.open(rafka.port)).call(['DEL', 'stats']);
  const rss: Record<number, number> = {};
  const started = performance.now();
  let idle = 0;
  for (let i = 1; i <= rounds; i++) {
    const c = await Client.open(rafka.port);
    await c.call(['RPUSHX', `topics:${topic}`, `churn-${i}`]);
    await c.call(['QUIT']);
    c.close();
    if (i % Math.round(rounds / 4) === 0) {
      const pause = performance.now();
      await sleep(2000);
      idle += performance.now() - pause;
      rss[i] = await rafka.rssKiB();
    }
  }
  const perSecond = rounds / ((performance.now() - started - idle) / 1000);
  await sleep(1000);
  const probe = await Client.open(rafka.port);
  probe.socket.write(command(['HGETALL', 'stats']));
  // `*6` then six bulks: names and decimal values.
  const lines = await probe.replies(7);
  probe.close();
  const stats = { unflushed: Number(lines[2]), deliveryErrors: Number(lines[4]) };
  const offsets = await admin.fetchTopicOffsets(topic);
  const inKafka = offsets.reduce((sum, p) => sum + Number(p.high), 0);
  const marks = Object.keys(rss).map(Number);
  const last = rss[marks[marks.length - 1]];
  const half = rss[marks[1]];
  return {
    rounds,
    connectionsPerS: Math.round(perSecond),
    rssKiB: rss,
    ratio: +(last / half).toFixed(3),
    bar: 1.1,
    ...stats,
    inKafka,
  };
}

async function produceLatency(rafka: Rafka) {
  const rounds = n(2000);
  const topic = await freshTopic(1);
  const producer = kafka.producer();
  await producer.connect();
  const base: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await producer.send({ topic, messages: [{ value: 'x' }] });
    base.push(performance.now() - t0);
  }
  await producer.disconnect();
  const c = await Client.open(rafka.port);
  const round: number[] = [];
  const rpushOnly: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await c.call(['RPUSHX', `topics:${topic}`, 'x']);
    rpushOnly.push(performance.now() - t0);
    await c.call(['DUMP', '5000']);
    round.push(performance.now() - t0);
  }
  c.close();
  for (const list of [base, round, rpushOnly]) list.sort((a, b) => a - b);
  const ms = (v: number) => +v.toFixed(3);
  return {
    rounds,
    baseline: { p50Ms: ms(percentile(base, 0.5)), p99Ms: ms(percentile(base, 0.99)) },
    rafka: {
      p50Ms: ms(percentile(round, 0.5)),
      p99Ms: ms(percentile(round, 0.99)),
      rpushxP99Ms: ms(percentile(rpushOnly, 0.99)),
    },
  };
}

/** Runs on its own fresh process: earlier phases grow the heap, which would hide the figure. */
async function idleMemory(dir: string) {
  const rafka = await startRafka(dir);
  try {
    return await idleMemoryOn(rafka);
  } finally {
    await rafka.stop();
  }
}

async function idleMemoryOn(rafka: Rafka) {
  const count = n(1000);
  const topic = await freshTopic(1);
  // Warm-up: a few connections through every command used below.
  for (let i = 0; i < 20; i++) {
    const c = await Client.open(rafka.port);
    await c.call(['CLIENT', 'SETNAME', `warm-${Date.now()}:${i}`]);
    await c.call(['RPUSHX', `topics:${topic}`, 'warm']);
    await c.call(['DUMP', '5000']);
    c.close();
  }
  await sleep(2000);
  const before = await rafka.rssKiB();
  const clients: Client[] = [];
  for (let i = 0; i < count; i++) {
    const c = await Client.open(rafka.port);
    await c.call(['CLIENT', 'SETNAME', `idle-${Date.now()}:${i}`]);
    await c.call(['RPUSHX', `topics:${topic}`, 'idle']);
    await c.call(['DUMP', '5000']);
    clients.push(c);
  }
  await sleep(2000);
  const after = await rafka.rssKiB();
  for (const c of clients) c.close();
  const perConnection = ((after - before) * 1024) / count;
  return {
    connections: count,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    bytesPerConnection: Math.round(perConnection),
    barBytes: 65536,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rafka-bench-'));
  await admin.connect();
  const rafka = await startRafka(dir);
  const report: Record<string, unknown> = { date: new Date().toISOString(), scale: SCALE };
  try {
    // Warm-up so the first figure does not pay for connections and metadata.
    const warm = await Client.open(rafka.port);
    const warmTopic = await freshTopic(1);
    for (let i = 0; i < 200; i++) await warm.call(['RPUSHX', `topics:${warmTopic}`, 'w']);
    await warm.call(['DUMP', '5000']);
    warm.close();
    const steps: [string, (r: Rafka) => Promise<unknown>][] = [
      ['produceThroughput', produceThroughput],
      ['consumeThroughput', consumeThroughput],
      ['connectionChurn', connectionChurn],
      ['produceLatency', produceLatency],
    ];
    const only = process.env.RAFKA_BENCH_ONLY?.split(',');
    for (const [name, run] of steps) {
      if (only && !only.includes(name)) continue;
      const t0 = performance.now();
      report[name] = await run(rafka);
      process.stderr.write(`${name} done in ${Math.round(performance.now() - t0)} ms\n`);
    }
    if (!only || only.includes('idleMemory')) report.idleMemory = await idleMemory(dir);
  } finally {
    await rafka.stop();
    await admin.deleteTopics({ topics: createdTopics, timeout: 10_000 }).catch(() => undefined);
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  }
  const text = JSON.stringify(report, null, 2);
  await writeFile(resolve(import.meta.dirname, '../../dist/bench-rafka.json'), text);
  process.stdout.write(`${text}\n`);
  type Ratio = { ratio: number; bar: number } | undefined;
  const churn = report.connectionChurn as (Ratio & { unflushed: number }) | undefined;
  const idle = report.idleMemory as { bytesPerConnection: number; barBytes: number } | undefined;
  const below = (r: Ratio): boolean => r !== undefined && r.ratio < r.bar;
  const missed = [
    below(report.produceThroughput as Ratio) && 'produce throughput',
    below(report.consumeThroughput as Ratio) && 'consume throughput',
    churn && (churn.ratio > churn.bar || churn.unflushed !== 0) && 'connection churn',
    idle && idle.bytesPerConnection > idle.barBytes && 'idle memory',
  ].filter((name) => typeof name === 'string');
  if (missed.length > 0) {
    process.stdout.write(`missed: ${missed.join(', ')}\n`);
    process.exitCode = 1;
  }
}

await main();
