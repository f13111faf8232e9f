/**
 * A port of the checks Go's `url.ParseRequestURI` makes, because clients of the original match
 * its error texts (`parse "": empty url`). Only validity and the message matter here; the URL
 * itself is parsed again by the HTTP client when it is used.
 */

/** Go's `strconv.Quote` for the characters that appear in URLs and MIME patterns. */
export function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

const HEX = /^[0-9A-Fa-f]$/;

function hasControlByte(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** Splits `scheme:rest`; an error string for a leading colon. */
function splitScheme(raw: string): { scheme: string; rest: string } | string {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] ?? '';
    if (/[A-Za-z]/.test(c)) continue;
    if (/[0-9+.-]/.test(c)) {
      if (i === 0) return { scheme: '', rest: raw };
      continue;
    }
    if (c === ':') {
      if (i === 0) return 'missing protocol scheme';
      return { scheme: raw.slice(0, i), rest: raw.slice(i + 1) };
    }
    return { scheme: '', rest: raw };
  }
  return { scheme: '', rest: raw };
}

/** Characters Go refuses, unescaped, in a host name. */
function badHostChar(c: string): boolean {
  if (/[A-Za-z0-9]/.test(c)) return false;
  if ('!$&\'()*+,;=:[]<>"-_.~'.includes(c)) return false;
  return c.charCodeAt(0) < 0x80;
}

/** Go's `unescape`: `%` must start a two-digit hex escape; hosts also refuse some characters. */
function checkEscapes(text: string, host: boolean): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (c === '%') {
      const a = text[i + 1] ?? '';
      const b = text[i + 2] ?? '';
      if (!HEX.test(a) || !HEX.test(b)) {
        return `invalid URL escape ${goQuote(text.slice(i, i + 3))}`;
      }
      if (host && parseInt(a, 16) < 8 && text.slice(i, i + 3) !== '%25') {
        return `invalid URL escape ${goQuote(text.slice(i, i + 3))}`;
      }
      i += 2;
      continue;
    }
    if (host && badHostChar(c)) return `invalid character ${goQuote(c)} in host name`;
  }
  return undefined;
}

function validOptionalPort(port: string): boolean {
  if (port === '') return true;
  return /^:[0-9]*$/.test(port);
}

function checkHost(host: string): string | undefined {
  if (host.startsWith('[')) {
    const end = host.lastIndexOf(']');
    if (end < 0) return "missing ']' in host";
    const colonPort = host.slice(end + 1);
    if (!validOptionalPort(colonPort)) return `invalid port ${goQuote(colonPort)} after host`;
    return undefined;
  }
  const colon = host.lastIndexOf(':');
  if (colon !== -1) {
    const colonPort = host.slice(colon);
    if (!validOptionalPort(colonPort)) return `invalid port ${goQuote(colonPort)} after host`;
  }
  return checkEscapes(host, true);
}

function checkAuthority(authority: string): string | undefined {
  const at = authority.lastIndexOf('@');
  const hostError = checkHost(at < 0 ? authority : authority.slice(at + 1));
  if (hostError !== undefined) return hostError;
  if (at < 0) return undefined;
  const userinfo = authority.slice(0, at);
  if (!/^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(userinfo)) return 'net/url: invalid userinfo';
  return checkEscapes(userinfo, false);
}

function innerError(raw: string): string | undefined {
  if (hasControlByte(raw)) return 'net/url: invalid control character in URL';
  if (raw === '') return 'empty url';
  if (raw === '*') return undefined;
  const split = splitScheme(raw);
  if (typeof split === 'string') return split;
  let rest = split.rest;
  const q = rest.indexOf('?');
  if (q >= 0) rest = rest.slice(0, q);
  if (!rest.startsWith('/')) return split.scheme !== '' ? undefined : 'invalid URI for request';
  if (split.scheme !== '' && rest.startsWith('//')) {
    let authority = rest.slice(2);
    const slash = authority.indexOf('/');
    rest = slash >= 0 ? authority.slice(slash) : '';
    authority = slash >= 0 ? authority.slice(0, slash) : authority;
    const authError = checkAuthority(authority);
    if (authError !== undefined) return authError;
  }
  return checkEscapes(rest, false);
}

/**
 * Go's `url.ParseRequestURI(raw)` error text (`parse "<raw>": <reason>`), or undefined when Go
 * would accept it: an absolute URI of any scheme, or a path that starts with `/`.
 */
export function requestUriError(raw: string): string | undefined {
  const reason = innerError(raw);
  return reason === undefined ? undefined : `parse ${goQuote(raw)}: ${reason}`;
}
