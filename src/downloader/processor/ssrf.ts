/**
 * The opt-in guard against downloads that reach internal addresses. It runs in the socket's DNS
 * lookup (so a name that resolves to a private address is refused whatever the name), and on IP
 * literals before connecting; each redirect hop and the proxy go through the same checks.
 */
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

const DENIED_V4 = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const;

const DENIED_V6 = [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const;

function parseCidr(cidr: string): { net: string; prefix: number; type: 'ipv4' | 'ipv6' } {
  const [net = '', bits] = cidr.split('/');
  const version = isIP(net);
  if (version === 0) throw new Error(`invalid CIDR ${JSON.stringify(cidr)}`);
  const max = version === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
    throw new Error(`invalid CIDR ${JSON.stringify(cidr)}`);
  return { net, prefix, type: version === 4 ? 'ipv4' : 'ipv6' };
}

/** An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as its IPv4 form. */
function unmap(address: string): string {
  const match = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return match?.[1] ?? address;
}

export class SsrfGuard {
  private readonly denied = new BlockList();
  private readonly allowed = new BlockList();

  constructor(allow: readonly string[]) {
    for (const [net, prefix] of DENIED_V4) this.denied.addSubnet(net, prefix, 'ipv4');
    for (const [net, prefix] of DENIED_V6) this.denied.addSubnet(net, prefix, 'ipv6');
    for (const cidr of allow) {
      const parsed = parseCidr(cidr);
      this.allowed.addSubnet(parsed.net, parsed.prefix, parsed.type);
    }
  }

  /** Throws when `cidrs` has a malformed entry; for config checks. */
  static validate(cidrs: readonly string[]): void {
    for (const cidr of cidrs) parseCidr(cidr);
  }

  /** Whether a connection to `address` is refused. */
  refuses(address: string): boolean {
    const plain = unmap(address);
    const type = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowed.check(plain, type)) return false;
    return this.denied.check(plain, type);
  }

  /** A `lookup` for sockets that fails with SsrfBlockedError on a refused address. */
  lookup(): typeof dnsLookup {
    const guarded = (hostname: string, options: unknown, callback: unknown): void => {
      const cb = (typeof options === 'function' ? options : callback) as (
        err: NodeJS.ErrnoException | null,
        address: string | LookupAddress[],
        family?: number,
      ) => void;
      const opts = typeof options === 'object' && options !== null ? options : {};
      dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
        if (err) return cb(err, '', 0);
        const refused = addresses.find((a) => this.refuses(a.address));
        if (refused) return cb(new SsrfBlockedError(refused.address), '', 0);
        if ((opts as { all?: boolean }).all) return cb(null, addresses);
        const first = addresses[0];
        if (!first)
          return cb(
            Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }),
            '',
            0,
          );
        cb(null, first.address, first.family);
      });
    };
    return guarded as unknown as typeof dnsLookup;
  }
}

export class SsrfBlockedError extends Error {
  override readonly name = 'SsrfBlockedError';
  readonly code = 'ERR_SSRF_BLOCKED';
  constructor(readonly address: string) {
    super(`destination address ${address} is not allowed`);
  }
}
