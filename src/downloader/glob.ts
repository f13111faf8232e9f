/**
 * Go's `path/filepath.Match` on Unix, ported rule for rule: MIME patterns of the original are Go
 * globs, and both which patterns are malformed and what `*` spans (never a `/`, so `*` does not
 * match `image/png` but `*\/*` does) are part of the contract.
 */

export class BadPatternError extends Error {
  constructor() {
    super('syntax error in pattern');
    this.name = 'BadPatternError';
  }
}

function scanChunk(pattern: string): { star: boolean; chunk: string; rest: string } {
  let star = false;
  while (pattern.startsWith('*')) {
    pattern = pattern.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < pattern.length; i++) {
    switch (pattern[i]) {
      case '\\':
        if (i + 1 < pattern.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
    }
  }
  return { star, chunk: pattern.slice(0, i), rest: pattern.slice(i) };
}

/** One character of a class, after an optional `\`; throws on a malformed class. */
function getEsc(chunk: string): { ch: string; rest: string } {
  if (chunk === '' || chunk[0] === '-' || chunk[0] === ']') throw new BadPatternError();
  if (chunk[0] === '\\') {
    chunk = chunk.slice(1);
    if (chunk === '') throw new BadPatternError();
  }
  const ch = String.fromCodePoint(chunk.codePointAt(0) ?? 0);
  const rest = chunk.slice(ch.length);
  if (rest === '') throw new BadPatternError();
  return { ch, rest };
}

/** Matches `chunk` at the start of `s`; the rest of `s`, or undefined. Validates all of it. */
function matchChunk(chunk: string, s: string): string | undefined {
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const head = chunk[0];
    if (head === '[') {
      let r = -1;
      if (!failed) {
        const ch = String.fromCodePoint(s.codePointAt(0) ?? 0);
        r = ch.codePointAt(0) ?? -1;
        s = s.slice(ch.length);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.startsWith('^')) {
        negated = true;
        chunk = chunk.slice(1);
      }
      let matched = false;
      let ranges = 0;
      for (;;) {
        if (chunk.startsWith(']') && ranges > 0) {
          chunk = chunk.slice(1);
          break;
        }
        const lo = getEsc(chunk);
        chunk = lo.rest;
        let hi = lo.ch;
        if (chunk[0] === '-') {
          const upper = getEsc(chunk.slice(1));
          hi = upper.ch;
          chunk = upper.rest;
        }
        if ((lo.ch.codePointAt(0) ?? 0) <= r && r <= (hi.codePointAt(0) ?? 0)) matched = true;
        ranges++;
      }
      if (matched === negated) failed = true;
      continue;
    }
    if (head === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        const ch = String.fromCodePoint(s.codePointAt(0) ?? 0);
        s = s.slice(ch.length);
      }
      chunk = chunk.slice(1);
      continue;
    }
    if (head === '\\') {
      chunk = chunk.slice(1);
      if (chunk === '') throw new BadPatternError();
    }
    if (!failed) {
      if (chunk[0] !== s[0]) failed = true;
      s = s.slice(1);
    }
    chunk = chunk.slice(1);
  }
  return failed ? undefined : s;
}

/** Go's `filepath.Match(pattern, name)`; throws BadPatternError on a malformed pattern. */
export function globMatch(pattern: string, name: string): boolean {
  outer: while (pattern.length > 0) {
    const scanned = scanChunk(pattern);
    const { star, chunk } = scanned;
    pattern = scanned.rest;
    if (star && chunk === '') return !name.includes('/');
    const t = matchChunk(chunk, name);
    if (t !== undefined && (t.length === 0 || pattern.length > 0)) {
      name = t;
      continue;
    }
    if (star) {
      for (let i = 0; i < name.length && name[i] !== '/'; i++) {
        const rest = matchChunk(chunk, name.slice(i + 1));
        if (rest !== undefined) {
          if (pattern.length === 0 && rest.length > 0) continue;
          name = rest;
          continue outer;
        }
      }
    }
    while (pattern.length > 0) {
      const next = scanChunk(pattern);
      pattern = next.rest;
      matchChunk(next.chunk, '');
    }
    return false;
  }
  return name.length === 0;
}

/** Whether Go would call `pattern` malformed. */
export function isValidGlob(pattern: string): boolean {
  try {
    globMatch(pattern, '');
    return true;
  } catch (err) {
    if (err instanceof BadPatternError) return false;
    throw err;
  }
}
