/**
 * The project's error hierarchy. Every error we raise carries a stable `code` that callers branch
 * on (rafka turns it into a RESP reply, the CLI into an exit code), a precise `name`, the
 * triggering error as `cause`, and whether retrying the same operation can help.
 */

export interface SkroutzErrorOptions {
  /** The error that triggered this one. */
  cause?: unknown;
  /** Whether the same operation may succeed if tried again. Defaults to the class's own value. */
  retriable?: boolean;
}

/** Base class of every error the project raises on purpose. */
export class SkroutzError extends Error {
  readonly code: string;
  readonly retriable: boolean;

  constructor(code: string, message: string, options: SkroutzErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** One rule a configuration value broke. */
export interface ConfigIssue {
  /** Dotted path of the key, e.g. `sinks.main.linger_ms`; the empty string is the root. */
  path: string;
  /** What the value should have been, e.g. `must be an integer from 0 to 65535`. */
  rule: string;
  /** The offending value, printed in the message; omitted for missing keys. */
  value?: unknown;
}

function formatIssue(issue: ConfigIssue): string {
  const where = issue.path === '' ? '(root)' : issue.path;
  if (!('value' in issue)) return `${where}: ${issue.rule}`;
  return `${where}: ${issue.rule} (got ${describeValue(issue.value)})`;
}

/** Short, single-line rendering of a config value for error messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // Cycles and bigints cannot be rendered as JSON; the type still helps the reader.
  }
  text ??= `a ${typeof value}`;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The configuration (file, flags or environment) is unusable; nothing was started. */
export class ConfigError extends SkroutzError {
  readonly issues: readonly ConfigIssue[];
  readonly source: string;

  constructor(source: string, issues: readonly ConfigIssue[], options: SkroutzErrorOptions = {}) {
    const lines = issues.map(formatIssue);
    super('ERR_CONFIG', `invalid configuration in ${source}:\n  ${lines.join('\n  ')}`, options);
    this.source = source;
    this.issues = issues;
  }
}

/** A command-line usage mistake: the CLI prints it with the command's help hint, exit 2. */
export class UsageError extends SkroutzError {
  constructor(message: string, options: SkroutzErrorOptions = {}) {
    super('ERR_USAGE', message, options);
  }
}

/** A connection to a peer (Redis, Kafka, Docker, HTTP) was lost or never made. */
export class ConnectionError extends SkroutzError {
  constructor(message: string, options: SkroutzErrorOptions = {}) {
    super('ERR_CONNECTION', message, { retriable: true, ...options });
  }
}

/** An operation did not finish within its time limit. */
export class TimeoutError extends SkroutzError {
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number, options: SkroutzErrorOptions = {}) {
    super('ERR_TIMEOUT', `${what} timed out after ${timeoutMs} ms`, {
      retriable: true,
      ...options,
    });
    this.timeoutMs = timeoutMs;
  }
}

/** Work was refused or abandoned because the component is shutting down. */
export class ClosingError extends SkroutzError {
  constructor(what: string, options: SkroutzErrorOptions = {}) {
    super('ERR_CLOSING', `${what}: the component is shutting down`, options);
  }
}

/** A component that this build does not implement yet. */
export class NotImplementedError extends SkroutzError {
  constructor(what: string) {
    super('ERR_NOT_IMPLEMENTED', `${what} is not built yet in this version of skroutz-infra`);
  }
}

/** Narrows an unknown thrown value to an Error, wrapping anything else. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(`non-error thrown: ${describeValue(value)}`);
}

/** The `code` of an error-like value, or undefined. */
export function errorCode(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const code = (value as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** Removes user name and password from a URL before it is logged or put into a message. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username === '' && url.password === '') return raw;
    url.username = url.username === '' ? '' : '***';
    url.password = url.password === '' ? '' : '***';
    return url.toString();
  } catch {
    return raw;
  }
}
