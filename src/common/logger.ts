/**
 * Structured logging: one JSON object per line, a fixed message plus fields. A component gets a
 * logger from its caller and derives children that bind the fields it always knows (component,
 * connection id, job id), so every line can be searched by field rather than by text.
 */
import type { Writable } from 'node:stream';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const SEVERITY: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly level: LogLevel;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line it writes. */
  child(fields: LogFields): Logger;
  isEnabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  /** Where lines go. Default: process.stderr. */
  stream?: Pick<Writable, 'write'>;
  /** Lowest level written. Default: `LOG_LEVEL` from the environment, else `info`. */
  level?: LogLevel;
  /** Fields on every line. */
  fields?: LogFields;
  /** Clock, for tests. Default: Date.now. */
  now?: () => number;
}

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

/** The level named by `LOG_LEVEL`, or `fallback` when unset. Throws on an unknown name. */
export function levelFromEnv(env: NodeJS.ProcessEnv, fallback: LogLevel = 'info'): LogLevel {
  const raw = env.LOG_LEVEL;
  if (raw === undefined || raw === '') return fallback;
  const lowered = raw.toLowerCase();
  if (isLogLevel(lowered)) return lowered;
  throw new RangeError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got ${raw})`);
}

/** Turns an error into plain fields, following its `cause` chain a few levels deep. */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const out: LogFields = { name: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.stack !== undefined) out.stack = err.stack;
  if (err.cause !== undefined && depth < 4) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

function encodeFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? serializeError(value) : value;
  }
  return out;
}

function safeStringify(record: LogFields): string {
  try {
    return JSON.stringify(record, (_key, value: unknown) =>
      typeof value === 'bigint' ? value.toString() : value,
    );
  } catch {
    return JSON.stringify({
      time: record.time,
      level: record.level,
      msg: record.msg,
      unserializable: true,
    });
  }
}

class JsonLogger implements Logger {
  constructor(
    readonly level: LogLevel,
    private readonly stream: Pick<Writable, 'write'>,
    private readonly fields: LogFields,
    private readonly now: () => number,
  ) {}

  isEnabled(level: LogLevel): boolean {
    return SEVERITY[level] >= SEVERITY[this.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  child(fields: LogFields): Logger {
    return new JsonLogger(this.level, this.stream, { ...this.fields, ...fields }, this.now);
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.isEnabled(level)) return;
    const time = new Date(this.now()).toISOString();
    const record = { time, level, msg, ...this.fields, ...encodeFields(fields ?? {}) };
    this.stream.write(`${safeStringify(record)}\n`);
  }
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return new JsonLogger(
    options.level ?? levelFromEnv(process.env),
    options.stream ?? process.stderr,
    options.fields ?? {},
    options.now ?? Date.now,
  );
}

/** A logger that drops everything; for unit tests of pure logic. */
export function silentLogger(): Logger {
  return createLogger({ level: 'silent', stream: { write: () => true } });
}
