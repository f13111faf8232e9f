/**
 * Client-side input parsing: Go-style durations (`1s`, `90s`, `1h30m`) and build params from the
 * positional arguments (`k=v`, `--k=v`, `k v`, `k=@file`, `k=@@literal`).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

export class InputError extends Error {
  override readonly name = 'InputError';
}

const UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration into milliseconds; throws InputError on anything else. */
export function parseDuration(text: string): number {
  if (text === '0') return 0;
  const pattern = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let position = 0;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(text)) !== null) {
    total += Number(match[1]) * UNITS_MS[match[2]];
    position = pattern.lastIndex;
  }
  if (position !== text.length || text === '') throw new InputError(`invalid duration '${text}'`);
  return total;
}

/** Turns positional args into params; `@path` values are read relative to `cwd`. */
export async function parseParams(
  args: readonly string[],
  cwd: string,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i].replace(/^-+/, '');
    let key: string;
    let value: string;
    const eq = arg.indexOf('=');
    if (eq >= 0) {
      key = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    } else {
      key = arg;
      if (i + 1 >= args.length) throw new InputError(`param '${key}' has no value`);
      value = args[++i];
    }
    if (key === '') throw new InputError(`param '${args[i]}' has no name`);
    if (value.startsWith('@@')) value = value.slice(1);
    else if (value.startsWith('@')) {
      const path = resolve(cwd, value.slice(1));
      try {
        value = await readFile(path, 'utf8');
      } catch (err) {
        throw new InputError(`cannot read param file ${path}: ${(err as Error).message}`);
      }
    }
    out[key] = value;
  }
  return out;
}
