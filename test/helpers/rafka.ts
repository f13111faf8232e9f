/**
 * rafka end-to-end helpers: a config file per test, the built executable on ephemeral ports, a raw
 * RESP client that reads replies byte-exact, and kafkajs reads of what landed in Kafka.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { spawnCli, type RunningCli } from './cli.js';
import { KAFKA_BROKERS, createTopicsReady, kafkaClient, uniqueId } from './services.js';

/** The original rafka test config; the local broker's minimum session timeout is 6000 ms. */
export function testConfig(): Record<string, Record<string, unknown>> {
  return {
    general: {
      'bootstrap.servers': 'localhost:9092',
      'session.timeout.ms': 6000,
      'heartbeat.interval.ms': 500,
      log_level: 0,
    },
    consumer: {
      'go.events.channel.enable': true,
      'go.application.rebalance.enable': false,
      'enable.auto.commit': true,
      'auto.commit.interval.ms': 1000,
      'enable.auto.offset.store': false,
      'auto.offset.reset': 'earliest',
    },
    producer: {
      'queue.buffering.max.ms': 0,
      'go.delivery.reports': true,
      'go.batch.producer': false,
    },
  };
}

export async function writeConfig(t: Test, config: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rafka-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'librdkafka.json');
  await writeFile(path, typeof config === 'string' ? config : JSON.stringify(config));
  return path;
}

export interface RafkaProcess {
  cli: RunningCli;
  port: number;
  metricsPort: number;
}

/** Starts rafka on ephemeral ports, in front of the shared Kafka unless `brokers` is given. */
export async function startRafka(
  t: Test,
  options: { config?: unknown; args?: string[]; brokers?: readonly string[] } = {},
): Promise<RafkaProcess> {
  const path = await writeConfig(t, options.config ?? testConfig());
  const cli = spawnCli(t, [
    'rafka',
    '-c',
    path,
    '-b',
    (options.brokers ?? KAFKA_BROKERS).join(','),
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--metrics-host',
    '127.0.0.1',
    '--metrics-port',
    '0',
    ...(options.args ?? []),
  ]);
  const line = await cli.waitForLine(/Listening on /);
  const record = JSON.parse(line) as { listen: string; metrics: string };
  return {
    cli,
    port: Number(record.listen.split(':').pop()),
    metricsPort: Number(record.metrics.split(':').pop()),
  };
}

export type Reply = string | number | bigint | null | Error | Reply[];

/** Parses one RESP reply from `buf` at `at`; undefined when incomplete. */
function parseReply(buf: Buffer, at: number): { value: Reply; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', at);
  if (lineEnd === -1) return undefined;
  const type = String.fromCharCode(buf[at]);
  const text = buf.toString('latin1', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: text, end: next };
    case '-':
      return { value: new Error(text), end: next };
    case ':': {
      const n = BigInt(text);
      return { value: n >= -(2n ** 53n) && n <= 2n ** 53n ? Number(n) : n, end: next };
    }
    case '$': {
      const len = Number(text);
      if (len === -1) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('latin1', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(text);
      if (count === -1) return { value: null, end: next };
      const items: Reply[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`bad reply type ${type} in ${JSON.stringify(buf.toString('latin1', at))}`);
  }
}

/** Encodes a command as a multibulk request. */
export function encodeCommand(args: readonly (string | Buffer | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    if (arg === null) {
      parts.push(Buffer.from('$-1\r\n'));
      continue;
    }
    const bytes = typeof arg === 'string' ? Buffer.from(arg, 'latin1') : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** A raw RESP client: byte-exact reads plus parsed replies, with time limits on every wait. */
export class RawClient {
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(t: Test, port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawClient(socket);
    t.teardown(() => {
      socket.destroy();
    });
    return client;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out waiting for ${what}; have ${JSON.stringify(this.buffer.toString('latin1'))}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Reads exactly `count` bytes, as latin1. */
  async readBytes(count: number, timeoutMs = 10_000): Promise<string> {
    return this.until(
      () => {
        if (this.buffer.length < count) return undefined;
        const out = this.buffer.toString('latin1', 0, count);
        this.buffer = this.buffer.subarray(count);
        return out;
      },
      timeoutMs,
      `${count} bytes`,
    );
  }

  /** Sends `request` and expects exactly the bytes of `reply`. */
  async expect(request: string | Buffer, reply: string, timeoutMs = 10_000): Promise<string> {
    this.write(request);
    return this.readBytes(Buffer.byteLength(reply, 'latin1'), timeoutMs);
  }

  async read(timeoutMs = 10_000): Promise<Reply> {
    return this.until(
      () => {
        const parsed = parseReply(this.buffer, 0);
        if (!parsed) return undefined;
        this.buffer = this.buffer.subarray(parsed.end);
        return { v: parsed.value };
      },
      timeoutMs,
      'a reply',
    ).then((box) => box.v);
  }

  async call(...args: (string | Buffer | null)[]): Promise<Reply> {
    this.write(encodeCommand(args));
    return this.read(20_000);
  }

  /** Resolves once the server closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.until(() => (this.closed ? true : undefined), timeoutMs, 'close');
  }

  pending(): string {
    return this.buffer.toString('latin1');
  }
}

export async function createTopics(t: Test, count = 1, partitions = 1): Promise<string[]> {
  const topics = Array.from({ length: count }, () => uniqueId('rafka'));
  const admin = kafkaClient().admin();
  await admin.connect();
  await createTopicsReady(
    admin,
    topics.map((topic) => ({ topic, numPartitions: partitions })),
  );
  t.teardown(async () => {
    await admin.deleteTopics({ topics, timeout: 10_000 }).catch(() => undefined);
    await admin.disconnect();
  });
  return topics;
}

export interface KafkaRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: string | null;
}

/** Reads every record of `topic` from the beginning until `count` arrived (or the time is up). */
export async function readTopic(
  topic: string,
  count: number,
  timeoutMs = 20_000,
): Promise<KafkaRecord[]> {
  const consumer = kafkaClient().consumer({ groupId: uniqueId('reader'), sessionTimeout: 6000 });
  const records: KafkaRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        records.push({
          partition,
          offset: message.offset,
          key: message.key === null ? null : message.key.toString('latin1'),
          value: message.value === null ? null : message.value.toString('latin1'),
        });
        if (records.length >= count) done();
      },
    });
    await Promise.race([finished, new Promise((r) => setTimeout(r, timeoutMs))]);
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** Produces values directly with kafkajs (to pre-fill topics for consume tests). */
export async function produceDirect(
  topic: string,
  messages: { value: string | null; partition?: number; key?: string }[],
): Promise<void> {
  // Idempotent: a retried request (a partition briefly without its leader) must not write the
  // messages that already landed twice, or every count the tests compare would be off.
  const producer = kafkaClient().producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({ topic, messages });
  } finally {
    await producer.disconnect();
  }
}

/** Fetches `/metrics` from the process. */
export async function scrape(metricsPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, {
    signal: AbortSignal.timeout(5000),
  });
  return response.text();
}

export function metricValue(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const [series, value] = line.split(' ');
    if (series === undefined || value === undefined) continue;
    const rest = series.slice(name.length);
    if (rest !== '' && !rest.startsWith('{')) continue;
    if (labels !== '' && !rest.includes(labels)) continue;
    return Number(value);
  }
  return undefined;
}
