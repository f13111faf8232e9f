/**
 * Configuration loading and checking. A component describes its JSON config once as a schema of
 * small rules; `parseConfig` walks the input, applies defaults and collects every problem before
 * anything is opened, so one run of the checker names each bad key, its value and the rule.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, type ConfigIssue } from './errors.js';

/** What to do with keys an object schema does not know. */
export type UnknownKeys = 'reject' | 'ignore' | 'warn';

export interface ParseContext {
  issues: ConfigIssue[];
  /** Paths of unknown keys that were ignored under `warn`; the caller logs them. */
  warnings: string[];
}

/** A rule that checks one value at `path` and returns it typed, or records an issue. */
export interface Rule<T> {
  readonly describe: string;
  parse(value: unknown, path: string, ctx: ParseContext): T | undefined;
}

function rule<T>(
  describe: string,
  check: (value: unknown, path: string, ctx: ParseContext) => T | undefined,
): Rule<T> {
  return { describe, parse: check };
}

function fail(ctx: ParseContext, path: string, ruleText: string, value: unknown): undefined {
  ctx.issues.push({ path, rule: ruleText, value });
  return undefined;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

export const string = (options: { nonEmpty?: boolean; pattern?: RegExp } = {}): Rule<string> => {
  const text = options.pattern
    ? `must be a string matching ${String(options.pattern)}`
    : options.nonEmpty
      ? 'must be a non-empty string'
      : 'must be a string';
  return rule(text, (value, path, ctx) => {
    if (typeof value !== 'string') return fail(ctx, path, text, value);
    if (options.nonEmpty && value === '') return fail(ctx, path, text, value);
    if (options.pattern && !options.pattern.test(value)) return fail(ctx, path, text, value);
    return value;
  });
};

function rangeText(kind: string, min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `must be ${kind} from ${min} to ${max}`;
  if (min !== undefined) return `must be ${kind} >= ${min}`;
  if (max !== undefined) return `must be ${kind} <= ${max}`;
  return `must be ${kind}`;
}

function numeric(kind: string, accept: (n: number) => boolean) {
  return (options: { min?: number; max?: number } = {}): Rule<number> => {
    const text = rangeText(kind, options.min, options.max);
    return rule(text, (value, path, ctx) => {
      if (typeof value !== 'number' || !accept(value)) return fail(ctx, path, text, value);
      if (options.min !== undefined && value < options.min) return fail(ctx, path, text, value);
      if (options.max !== undefined && value > options.max) return fail(ctx, path, text, value);
      return value;
    });
  };
}

export const number = numeric('a number', Number.isFinite);
export const integer = numeric('an integer', Number.isInteger);

export const boolean = (): Rule<boolean> =>
  rule('must be true or false', (value, path, ctx) =>
    typeof value === 'boolean' ? value : fail(ctx, path, 'must be true or false', value),
  );

export const oneOf = <const T extends string>(choices: readonly T[]): Rule<T> => {
  const text = `must be one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`;
  return rule(text, (value, path, ctx) =>
    (choices as readonly unknown[]).includes(value) ? (value as T) : fail(ctx, path, text, value),
  );
};

/** `host:port`, with a port from 0 to 65535; IPv6 hosts in brackets. */
export const hostPort = (): Rule<{ host: string; port: number }> => {
  const text = 'must be "host:port" with a port from 0 to 65535';
  return rule(text, (value, path, ctx) => {
    const parsed = typeof value === 'string' ? parseHostPort(value) : undefined;
    return parsed ?? fail(ctx, path, text, value);
  });
};

export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2] ?? '', port };
}

export const array = <T>(item: Rule<T>, options: { minItems?: number } = {}): Rule<T[]> => {
  const text =
    options.minItems === undefined
      ? 'must be an array'
      : `must be an array of at least ${options.minItems} item(s)`;
  return rule(text, (value, path, ctx) => {
    if (!Array.isArray(value)) return fail(ctx, path, text, value);
    if (options.minItems !== undefined && value.length < options.minItems) {
      return fail(ctx, path, text, value);
    }
    const before = ctx.issues.length;
    const out = value.map((entry, index) => item.parse(entry, `${path}[${index}]`, ctx));
    return ctx.issues.length === before ? (out as T[]) : undefined;
  });
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A map from free-form names (checked by `keyPattern`) to values of one rule. */
export const record = <T>(item: Rule<T>, keyPattern?: RegExp): Rule<Record<string, T>> =>
  rule('must be an object', (value, path, ctx) => {
    if (!isPlainObject(value)) return fail(ctx, path, 'must be an object', value);
    const out: Record<string, T> = {};
    for (const [key, entry] of Object.entries(value)) {
      if (keyPattern && !keyPattern.test(key)) {
        fail(ctx, join(path, key), `name must match ${String(keyPattern)}`, key);
        continue;
      }
      const parsed = item.parse(entry, join(path, key), ctx);
      if (parsed !== undefined) out[key] = parsed;
    }
    return out;
  });

/** A field of an object schema: its rule and, if it may be left out, its default. */
export interface Field<T> {
  rule: Rule<T>;
  optional: boolean;
  fallback?: () => T;
}

export const required = <T>(r: Rule<T>): Field<T> => ({ rule: r, optional: false });
/** Optional with a default; `fallback` is called per parse so mutable defaults are not shared. */
export const withDefault = <T>(r: Rule<T>, fallback: T | (() => T)): Field<T> => ({
  rule: r,
  optional: true,
  fallback: typeof fallback === 'function' ? (fallback as () => T) : () => fallback,
});
/** Optional with no default: absent stays undefined. */
export const optional = <T>(r: Rule<T>): Field<T | undefined> => ({
  rule: r,
  optional: true,
});

type Shape = Record<string, Field<unknown>>;
export type Infer<S extends Shape> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

export const object = <S extends Shape>(
  shape: S,
  unknownKeys: UnknownKeys = 'reject',
): Rule<Infer<S>> =>
  rule('must be an object', (value, path, ctx) => {
    if (!isPlainObject(value)) return fail(ctx, path, 'must be an object', value);
    const before = ctx.issues.length;
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(shape)) {
      const present = Object.hasOwn(value, key) && value[key] !== undefined;
      if (!present) {
        if (!field.optional) ctx.issues.push({ path: join(path, key), rule: 'is required' });
        else if (field.fallback) out[key] = field.fallback();
        continue;
      }
      out[key] = field.rule.parse(value[key], join(path, key), ctx);
    }
    for (const key of Object.keys(value)) {
      if (Object.hasOwn(shape, key)) continue;
      if (unknownKeys === 'reject')
        ctx.issues.push({ path: join(path, key), rule: 'is not a known key' });
      if (unknownKeys === 'warn') ctx.warnings.push(join(path, key));
    }
    return ctx.issues.length === before ? (out as Infer<S>) : undefined;
  });

/** Adds a check across fields after the rule itself passed, e.g. `low < high`. */
export const refine = <T>(
  inner: Rule<T>,
  check: (value: T) => ConfigIssue[] | undefined,
): Rule<T> =>
  rule(inner.describe, (value, path, ctx) => {
    const parsed = inner.parse(value, path, ctx);
    if (parsed === undefined) return undefined;
    const problems = check(parsed) ?? [];
    for (const problem of problems) ctx.issues.push({ ...problem, path: join(path, problem.path) });
    return problems.length === 0 ? parsed : undefined;
  });

export interface Parsed<T> {
  value: T;
  /** Unknown keys that were ignored with `warn`; log one line per entry. */
  warnings: string[];
}

/** Checks `input` against `schema`; throws one ConfigError listing every problem found. */
export function parseConfig<T>(schema: Rule<T>, input: unknown, source: string): Parsed<T> {
  const ctx: ParseContext = { issues: [], warnings: [] };
  const value = schema.parse(input, '', ctx);
  if (ctx.issues.length > 0 || value === undefined) {
    throw new ConfigError(
      source,
      ctx.issues.length > 0 ? ctx.issues : [{ path: '', rule: 'is invalid' }],
    );
  }
  return { value, warnings: ctx.warnings };
}

/** Reads and parses a JSON file; errors name the file and, for syntax errors, the position. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'cannot be read';
    throw new ConfigError(path, [{ path: '', rule: reason }], { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ConfigError(path, [{ path: '', rule: `is not valid JSON: ${detail}` }], {
      cause: err,
    });
  }
}

/** One override from a flag or an environment variable, at a dotted path of the raw config. */
export interface Override {
  path: string;
  value: unknown;
}

/**
 * Writes overrides into a copy of the raw (unchecked) config, creating objects on the way, so the
 * schema checks flag and environment values with the same rules and messages as the file.
 */
export function applyOverrides(raw: unknown, overrides: readonly Override[]): unknown {
  const root: Record<string, unknown> = isPlainObject(raw) ? structuredClone(raw) : {};
  for (const { path, value } of overrides) {
    if (value === undefined) continue;
    const keys = path.split('.');
    const last = keys.pop() as string;
    let node = root;
    for (const key of keys) {
      const next = node[key];
      node[key] = isPlainObject(next) ? next : {};
      node = node[key] as Record<string, unknown>;
    }
    node[last] = value;
  }
  return isPlainObject(raw) || overrides.length > 0 ? root : raw;
}

/**
 * Overrides from environment variables: each entry of `mapping` names a variable and the config
 * path it sets. Values are parsed as JSON when they look like JSON (numbers, booleans, arrays,
 * objects) and kept as strings otherwise.
 */
export function envOverrides(env: NodeJS.ProcessEnv, mapping: Record<string, string>): Override[] {
  const out: Override[] = [];
  for (const [variable, path] of Object.entries(mapping)) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    out.push({ path, value: parseEnvValue(raw) });
  }
  return out;
}

function parseEnvValue(raw: string): unknown {
  if (!/^(?:-?\d|true$|false$|\[|\{)/.test(raw)) return raw;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}
