/**
 * One client connection: decodes requests, runs them one at a time in arrival order, and writes
 * the replies in order: those a chunk of requests (or one finished command) produces synchronously
 * go out in one socket write. It holds the connection state of §3.4: id and name,
 * at most one consumer, the producer state and the monitor flag.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import { blpopTimeoutMs, dumpTimeoutMs, nextPosition, parseGoInt, splitN } from './arguments.js';
import { ConsumerSession } from './consumer-session.js';
import { consumerConfigFor } from './kafka-config.js';
import type { ConsumedMessage } from './kafka-port.js';
import { COMMAND_LABELS, type CommandLabel } from './metrics.js';
import { monitorLine } from './monitor-format.js';
import { ProducerState } from './producer.js';
import {
  ProtocolErrorText,
  RespDecoder,
  type ProtocolErrorKind,
  type RequestArgs,
} from './resp-decoder.js';
import * as resp from './resp-encoder.js';
import type { ServerContext } from './server-context.js';

const EMPTY = Buffer.alloc(0);
const MAX_UNSENT_BYTES = 1024 * 1024;
/** A reply this large is written on its own rather than copied into the coalesced write. */
const COALESCE_LIMIT = 64 * 1024;
const QUIT_COMMIT_MS = 2000;
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;
const SHUTDOWN = 'CONS Server shutdown';

type Reply = Buffer | Promise<Buffer>;

interface Pending {
  args: RequestArgs;
  arrivedAt: number;
  /** The metrics label, set when the command runs. */
  command: CommandLabel;
}

/** Upper-case command name to its metrics label; anything else is `other`. */
const LABELS = new Map<string, CommandLabel>(
  COMMAND_LABELS.filter((c) => c !== 'other').map((c) => [c.toUpperCase(), c]),
);

const PROTOCOL_LABEL: Record<ProtocolErrorKind, string> = {
  expectNumber: 'expect_number',
  expectNewline: 'expect_newline',
  expectTypeChar: 'expect_typechar',
  tooManyArg: 'too_many_arg',
  invalidBulkSize: 'invalid_bulk_size',
  lineTooLong: 'line_too_long',
};

/** `ip:port`, IPv6 bracketed, IPv4-mapped IPv6 shown as IPv4. */
export function peerId(address: string | undefined, port: number | undefined): string {
  let host = address ?? 'unknown';
  if (host.startsWith('::ffff:') && host.includes('.')) host = host.slice('::ffff:'.length);
  else if (host.includes(':')) host = `[${host}]`;
  return `${host}:${port ?? 0}`;
}

export class Connection {
  id: string;
  private named = false;
  private readonly decoder = new RespDecoder();
  private readonly queue: Pending[] = [];
  private protocolError: ProtocolErrorKind | undefined;
  private busy = false;
  private ended = false;
  private readPaused = false;
  private stopReading = false;
  /** After the current reply, close (shutdown, QUIT). */
  private closeWhenIdle = false;
  consumer: ConsumerSession | undefined;
  /** The BLPOP key bytes `consumer` was last matched with; the same bytes skip parsing. */
  private consumerKey: Buffer | undefined;
  /** Replies produced by the current synchronous run, sent together by `flush`. */
  private out: Buffer[] | undefined;
  private producerState: ProducerState | undefined;
  private monitoring = false;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  /** Resolves once the socket closed and the connection's cleanup started. */
  readonly closed: Promise<void>;
  private markClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ServerContext,
  ) {
    this.id = peerId(socket.remoteAddress, socket.remotePort);
    this.log = ctx.log.child({ component: 'client' });
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug('connection error', { client: this.id, err }));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.maybeResume());
    this.log.debug('connection open', { client: this.id });
  }

  get hasConsumer(): boolean {
    return this.consumer !== undefined;
  }

  get isBusy(): boolean {
    return this.busy;
  }

  /** Shutdown step 2: finish the current reply, then close. */
  closeAfterCurrent(): void {
    this.closeWhenIdle = true;
    this.queue.length = 0;
    if (!this.busy) this.end();
  }

  /** Shutdown step 5: read nothing more; the current command still gets its answer. */
  stopServing(): void {
    this.stopReading = true;
    this.socket.pause();
    this.closeAfterCurrent();
  }

  /** Abandons the connection at once (forced stop). */
  destroy(): void {
    this.socket.destroy();
  }

  /** One MONITOR line; dropped (and counted) while more than 1 MiB is unsent to this monitor. */
  writeMonitor(line: Buffer): void {
    if (this.ended) return;
    if (this.socket.writableLength > MAX_UNSENT_BYTES) {
      this.ctx.metrics.monitorDropped.inc();
      this.ctx.noteMonitorDrop(this.id);
      return;
    }
    // A connection monitoring its own commands: the line stays ordered with its pending replies.
    if (this.out) this.out.push(line);
    else this.socket.write(line);
  }

  private onData(chunk: Buffer): void {
    if (this.stopReading || this.protocolError) return;
    const { requests, error } = this.decoder.decode(chunk);
    const now = performance.now();
    for (const args of requests) this.queue.push({ args, arrivedAt: now, command: 'other' });
    if (error) {
      this.protocolError = error;
      this.ctx.metrics.protocolErrors.inc({ error: PROTOCOL_LABEL[error] });
    }
    this.out = [];
    try {
      this.pump();
    } finally {
      this.flush();
    }
  }

  private pump(): void {
    while (!this.busy && !this.ended) {
      const next = this.queue.shift();
      if (!next) break;
      const reply = this.run(next);
      if (reply instanceof Promise) {
        this.busy = true;
        reply.then(
          (buffer) => this.finish(next, buffer),
          (err: unknown) => {
            this.log.error('command failed', { client: this.id, err });
            this.finish(next, resp.errorReply('ERR internal error'));
          },
        );
        return;
      }
      this.record(next, reply);
      this.write(reply);
      if (this.closeWhenIdle) return this.end();
    }
    if (!this.busy && this.protocolError && this.queue.length === 0 && !this.ended) {
      this.write(resp.errorReply(ProtocolErrorText[this.protocolError]));
      this.end();
    }
  }

  private finish(request: Pending, reply: Buffer): void {
    this.busy = false;
    this.record(request, reply);
    this.out = [];
    try {
      this.write(reply);
      if (this.closeWhenIdle) return this.end();
      this.pump();
    } finally {
      this.flush();
    }
  }

  private record(request: Pending, reply: Buffer): void {
    const { command } = request;
    const outcome = reply[0] === 0x2d ? 'error' : 'ok';
    this.ctx.metrics.commandCounter(command, outcome).inc();
    this.ctx.metrics.commandTimer(command).observe((performance.now() - request.arrivedAt) / 1000);
  }

  private write(reply: Buffer): void {
    if (this.ended || this.socket.destroyed) return;
    const out = this.out;
    if (!out) return this.send(reply);
    if (reply.length < COALESCE_LIMIT) {
      out.push(reply);
      return;
    }
    this.flush();
    this.out = [];
    this.send(reply);
  }

  /** Sends the replies collected so far in one write. */
  private flush(): void {
    const out = this.out;
    this.out = undefined;
    if (!out || out.length === 0 || this.socket.destroyed) return;
    this.send(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  private send(data: Buffer): void {
    this.socket.write(data);
    if (!this.readPaused && this.socket.writableLength > MAX_UNSENT_BYTES) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    if (!this.stopReading) this.socket.resume();
  }

  private end(): void {
    if (this.ended) return;
    this.flush();
    this.ended = true;
    this.queue.length = 0;
    this.socket.end();
  }

  private onClose(): void {
    this.ended = true;
    this.abort.abort();
    this.ctx.release(this);
    if (this.monitoring) this.ctx.removeMonitor(this);
    if (this.consumer) this.ctx.closeConsumer(this.consumer);
    if (this.producerState) this.ctx.settleProducerState(this.producerState, this.id);
    this.log.debug('connection closed', { client: this.id });
    this.markClosed();
  }

  private run(request: Pending): Reply {
    const { args } = request;
    if (this.ctx.monitors.size > 0) this.ctx.broadcastMonitor(this.id, args);
    const arg = (i: number): Buffer => args[i] ?? EMPTY;
    const name = arg(0).toString('latin1').toUpperCase();
    request.command = LABELS.get(name) ?? 'other';
    switch (name) {
      case 'CLIENT':
        return this.client(arg(1), arg(2));
      case 'BLPOP':
        return this.blpop(args, request.arrivedAt);
      case 'RPUSH':
        return this.rpush(arg(1), arg(2));
      case 'RPUSHX':
        return this.rpushx(args);
      case 'DUMP':
        return this.dump(args);
      case 'KEYS':
        return this.keys(arg(1));
      case 'HGETALL':
        return this.hgetall(arg(1));
      case 'DEL':
        return this.del(arg(1));
      case 'PING':
        return resp.PONG;
      case 'QUIT':
        return this.quit();
      case 'MONITOR':
        return this.monitor(args);
      default:
        return cmdError(`Command not supported: ${name}`);
    }
  }

  private client(sub: Buffer, value: Buffer): Reply {
    const subName = sub.toString('latin1').toUpperCase();
    if (subName === 'GETNAME') return resp.bulk(Buffer.from(this.id, 'latin1'));
    if (subName !== 'SETNAME') return cmdError(`Command not supported: ${subName}`);
    const name = value.toString('latin1');
    if (this.ctx.isTaken(name)) return cmdError(`CONS id ${name} is already taken`);
    if (this.named) return cmdError(`CONS Client ID is already set to ${this.id}`);
    if (!name.includes(':')) return cmdError('CONS Cannot parse group.id');
    this.ctx.rename(this, name);
    this.id = name;
    this.named = true;
    this.log.debug('client named', { client: name });
    return resp.OK_BULK;
  }

  private blpop(args: RequestArgs, arrivedAt: number): Reply {
    const keyArg = args[1] ?? EMPTY;
    // The key the consumer already matched parses to the same topics and JSON again.
    const current = this.consumer;
    const consumer =
      current && this.consumerKey?.equals(keyArg) ? current : this.blpopConsumer(keyArg);
    if (!(consumer instanceof ConsumerSession)) return consumer;
    if (this.ctx.shuttingDown) return cmdError(SHUTDOWN);
    if (consumer.failure !== undefined) return cmdError(`CONS Poll ${consumer.failure}`);
    const timeoutMs = blpopTimeoutMs(args[args.length - 1], this.ctx.options.blpopTimeoutSeconds);
    // Fast path: a buffered message is handed out without a timer or a promise.
    const ready = consumer.tryNext();
    if (ready) return this.messageReply(ready);
    const remainingMs = Math.max(0, arrivedAt + timeoutMs - performance.now());
    return this.waitForMessage(consumer, remainingMs);
  }

  /** Parses a BLPOP key and finds or registers this connection's consumer for it. */
  private blpopConsumer(keyArg: Buffer): ConsumerSession | Buffer {
    const parts = splitN(keyArg, 3);
    if (parts.length < 2 || parts[0].toString('latin1') !== 'topics') {
      return cmdError(`CONS Cannot parse topics from \`${keyArg.toString('latin1')}\``);
    }
    const topics = parts[1].toString('latin1').split(',');
    let overrides: Record<string, unknown> | null = null;
    const json = parts[2];
    if (json !== undefined && json.length > 0) {
      const text = json.toString('utf8');
      try {
        const parsed: unknown = JSON.parse(text);
        if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
          throw new Error('expected a JSON object');
        }
        overrides = parsed as Record<string, unknown> | null;
      } catch (err) {
        return cmdError(
          `CONS Error parsing configuration from '${text}'; ${(err as Error).message}`,
        );
      }
    }
    if (this.ctx.shuttingDown) return cmdError(SHUTDOWN);
    if (!this.named) {
      return cmdError('CONS Connection not ready. Identify yourself using `CLIENT SETNAME` first');
    }
    const consumerId = `${this.id}|${topics.join(',')}`;
    if (!this.consumer) {
      const created = this.createConsumer(consumerId, topics, overrides);
      if (typeof created === 'string') return cmdError(created);
      this.consumer = created;
    } else if (this.consumer.consumerId !== consumerId) {
      return cmdError(
        `CONS Client '${this.id}' has Consumer '${this.consumer.consumerId}' registered (new consID: '${consumerId}')`,
      );
    }
    this.consumerKey = Buffer.from(keyArg);
    return this.consumer;
  }

  private createConsumer(
    consumerId: string,
    topics: string[],
    overrides: Record<string, unknown> | null,
  ): ConsumerSession | string {
    const failure = `CONS Failed to register Consumer '${consumerId}' for Client '${this.id}'`;
    const illegal = topics.find((t) => !LEGAL_TOPIC.test(t));
    const { config, problems } = consumerConfigFor(this.ctx.config.consumerSection, overrides);
    if (illegal !== undefined || !config) {
      const cause =
        illegal !== undefined
          ? `illegal topic name "${illegal}"`
          : problems.map((p) => `${p.property}: ${p.reason}`).join('; ');
      this.ctx.metrics.consumerRegistrations.inc({ outcome: 'failed' });
      this.log.warn('consumer registration failed', { client: this.id, consumerId, cause });
      return failure;
    }
    const [group = '', second = ''] = this.id.split(':');
    const clientId = second.split('|')[0] || 'rafka';
    return this.ctx.createConsumer({ groupId: group, clientId, topics, config }, consumerId);
  }

  private async waitForMessage(consumer: ConsumerSession, timeoutMs: number): Promise<Buffer> {
    const signal = AbortSignal.any([
      this.abort.signal,
      this.ctx.shutdownSignal,
      AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
    ]);
    const message = timeoutMs <= 0 ? undefined : await consumer.next(signal);
    if (message) return this.messageReply(message);
    if (this.ctx.shuttingDown) return cmdError(SHUTDOWN);
    if (consumer.failure !== undefined) return cmdError(`CONS Poll ${consumer.failure}`);
    this.ctx.metrics.blpopTimeouts.inc();
    return resp.NULL_ARRAY;
  }

  private messageReply(message: ConsumedMessage): Buffer {
    this.ctx.metrics.consumerMessages.inc({ topic: message.topic });
    return resp.consumedMessage(message.topic, message.partition, message.offset, message.value);
  }

  private rpush(key: Buffer, ack: Buffer): Reply {
    if (key.toString('latin1').toUpperCase() !== 'ACKS') {
      return this.ackError("CONS You can only RPUSH to the 'acks' key");
    }
    const parts = splitN(ack, 3);
    if (parts.length < 3)
      return this.ackError(`CONS Cannot parse ack: '${ack.toString('latin1')}'`);
    const [topicBytes, partitionBytes, offsetBytes] = parts as [Buffer, Buffer, Buffer];
    const partition = parseGoInt(partitionBytes, 10, 32);
    if (!partition.ok) return this.ackError(`CONS ${partition.error}`);
    const offset = parseGoInt(offsetBytes, 0, 64);
    if (!offset.ok) return this.ackError(`CONS ${offset.error}`);
    if (!this.consumer) return this.ackError(`CONS No consumer registered for Client ${this.id}`);
    const position = nextPosition(offset.value);
    if (position < 0n)
      return this.ackError(`CONS offset cannot be negative, got ${position.toString()}`);
    const outcome = this.consumer.ack(
      topicBytes.toString('latin1'),
      Number(partition.value),
      position,
    );
    if (outcome === 'unknown_partition') return this.ackError('CONS Local: Unknown partition');
    this.ctx.metrics.acks.inc({ outcome });
    return resp.ONE;
  }

  private ackError(text: string): Buffer {
    this.ctx.metrics.acks.inc({ outcome: 'rejected' });
    return cmdError(text);
  }

  private ensureProducerState(): ProducerState {
    this.producerState ??= new ProducerState(() => this.id);
    return this.producerState;
  }

  private rpushx(args: RequestArgs): Reply {
    const n = args.length - 1;
    if (n !== 2) return cmdError(`PROD RPUSHX accepts 2 arguments, got ${n}`);
    const parts = splitN(args[1] ?? EMPTY, 3);
    if (parts.length === 1) {
      return cmdError(
        "PROD First argument must be in the form of 'topics:<topic>' or 'topics:<topic>:<key>'",
      );
    }
    const topic = parts[1].toString('latin1');
    const key = parts.length === 3 ? parts[2] : null;
    const error = this.ctx.producer.accept(this.ensureProducerState(), topic, key, args[2] ?? null);
    return error === undefined ? resp.ONE : cmdError(error);
  }

  private dump(args: RequestArgs): Reply {
    const state = this.producerState;
    if (!state) return resp.ZERO;
    const n = args.length - 1;
    if (n !== 1) return cmdError(`PROD DUMP accepts 1 argument, got ${n}`);
    const timeoutMs = dumpTimeoutMs(args[1]);
    if (timeoutMs === undefined) return cmdError('PROD NaN');
    if (state.outstanding === 0) return resp.ZERO;
    this.ctx.producer.flushNow();
    if (timeoutMs <= 0) return resp.integer(state.outstanding);
    return state.waitIdle(timeoutMs).then((left) => resp.integer(left));
  }

  private keys(pattern: Buffer): Reply {
    if (pattern.toString('latin1') !== 'topics:') {
      return cmdError(`ERR Expected argument to be 'topics:', got ${pattern.toString('latin1')}`);
    }
    this.ensureProducerState();
    return this.ctx.kafka.listTopics(2000).then(
      (topics) => {
        if (topics.length === 0) return resp.EMPTY_ARRAY;
        const sorted = topics
          .map((t) => Buffer.from(`topics:${t}`, 'latin1'))
          .sort((a, b) => Buffer.compare(a, b));
        return resp.bulkArray(sorted);
      },
      (err: unknown) => cmdError(`ERR Error getting metadata: ${(err as Error).message}`),
    );
  }

  private hgetall(key: Buffer): Reply {
    const upper = key.toString('latin1').toUpperCase();
    if (upper !== 'STATS') return cmdError(`ERR Expected key to be 'stats', got ${upper}`);
    const stats = this.ctx.stats;
    return resp.bulkArray([
      'producer.unflushed.messages',
      String(stats.unflushedMessages),
      'producer.delivery.errors',
      String(stats.deliveryErrors),
      'producer.unknown.events',
      String(stats.unknownEvents),
    ]);
  }

  private del(key: Buffer): Reply {
    const upper = key.toString('latin1').toUpperCase();
    if (upper !== 'STATS') return cmdError(`ERR Expected key to be 'stats', got ${upper}`);
    this.ctx.stats.reset();
    return resp.ONE;
  }

  private async quit(): Promise<Buffer> {
    if (this.consumer) {
      const commit = this.consumer.commit();
      await Promise.race([commit, new Promise((r) => setTimeout(r, QUIT_COMMIT_MS).unref())]);
    }
    this.ctx.release(this);
    this.closeWhenIdle = true;
    return resp.OK_BULK;
  }

  private monitor(args: RequestArgs): Reply {
    if (args.length > 1)
      return cmdError("ERR command 'monitor' does not accept any extra arguments");
    if (!this.monitoring) {
      this.monitoring = true;
      this.ctx.addMonitor(this);
    }
    return resp.OK_SIMPLE;
  }
}

function cmdError(text: string): Buffer {
  return resp.errorReply(Buffer.from(text, 'latin1'));
}

/** Formats one MONITOR line for `issuer`. */
export function formatMonitor(issuer: string, args: RequestArgs): Buffer {
  const now = Date.now();
  const micros = Math.floor((performance.now() * 1000) % 1000);
  return monitorLine(now, micros, issuer, args);
}
