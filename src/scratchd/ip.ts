/** Client IP (trusted proxies and X-Forwarded-For), IP truncation and bot detection (§3.6). */
import { BlockList, isIP } from 'node:net';

/** `::ffff:1.2.3.4` is the IPv4 address it maps; everything else is returned as is. */
export function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return mapped?.[1] ?? ip;
}

export class TrustedProxies {
  private readonly list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [net = '', bits = ''] = cidr.split('/');
      this.list.addSubnet(net, Number(bits), net.includes(':') ? 'ipv6' : 'ipv4');
    }
  }

  has(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * Walks X-Forwarded-For from the right, skipping trusted hops; the first untrusted is the client.
   */
  clientIp(remote: string | undefined, forwarded: string | undefined): string | null {
    if (remote === undefined) return null;
    let client = normalizeIp(remote);
    if (forwarded === undefined || !this.has(client)) return client;
    const hops = forwarded.split(',').map((hop) => normalizeIp(hop.trim()));
    for (let i = hops.length - 1; i >= 0; i -= 1) {
      const hop = hops[i] ?? '';
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.has(hop)) break;
    }
    return client;
  }
}

function expandIpv6(ip: string): number[] | undefined {
  const [head = '', tail] = ip.split('::');
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => parseInt(g, 16));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const fill = 8 - left.length - right.length;
  if (fill < 0 || (tail === undefined && fill !== 0)) return undefined;
  return [...left, ...Array<number>(fill).fill(0), ...right];
}

/** IPv4 to /24, IPv6 to /48 (§3.6 step 2). */
export function truncateIp(ip: string): string | null {
  const family = isIP(ip);
  if (family === 4) return ip.replace(/\.\d+$/, '.0');
  if (family !== 6) return null;
  if (ip.includes('.')) return null;
  const groups = expandIpv6(ip.split('%')[0] ?? '');
  if (groups === undefined) return null;
  return `${groups
    .slice(0, 3)
    .map((g) => g.toString(16))
    .join(':')}::`;
}

export function applyIpRule(ip: string | null, rule: 'truncate' | 'drop' | 'keep'): string | null {
  if (ip === null || rule === 'drop') return null;
  return rule === 'keep' ? ip : truncateIp(ip);
}

const BUILT_IN_BOTS =
  /bot|crawl|spider|slurp|headless|phantomjs|lighthouse|curl\/|wget\/|python-requests|python-urllib|go-http-client|java\/|okhttp|apache-httpclient|libwww|facebookexternalhit|preview/i;

export class BotMatcher {
  private readonly extra: RegExp[];

  constructor(patterns: readonly string[]) {
    this.extra = patterns.map((p) => new RegExp(p, 'i'));
  }

  /** The last answer: a request asks twice (screening, then the envelope) for the same UA. */
  private last: { ua: string; bot: boolean } | undefined;

  isBot(ua: string | null): boolean {
    if (ua === null || ua === '') return true;
    if (this.last?.ua === ua) return this.last.bot;
    const bot = BUILT_IN_BOTS.test(ua) || this.extra.some((re) => re.test(ua));
    this.last = { ua, bot };
    return bot;
  }
}
