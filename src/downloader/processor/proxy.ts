/**
 * Forward proxies for aggregations with `aggr_proxy`: HTTP targets go to the proxy in absolute
 * form (`GET http://origin/path`), HTTPS targets through a CONNECT tunnel. got has no proxy
 * support of its own, so this is its `request` function; it runs for every redirect hop.
 */
import {
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { LookupFunction } from 'node:net';

type Callback = (response: IncomingMessage) => void;
export type ProxiedRequest = (
  url: URL,
  options: RequestOptions,
  callback?: Callback,
) => ClientRequest;

/** An https Agent whose sockets are CONNECT tunnels through `proxy`. */
class TunnelAgent extends HttpsAgent {
  constructor(
    private readonly proxy: URL,
    private readonly lookup: LookupFunction | undefined,
  ) {
    super({ keepAlive: false });
  }

  override createConnection(
    requestOptions: RequestOptions,
    done?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const options = requestOptions as ConnectionOptions & { host?: string; port?: number };
    const callback = (err: Error | null, stream?: Duplex): void => done?.(err, stream as Duplex);
    const target = `${options.host ?? 'localhost'}:${options.port ?? 443}`;
    const connectRequest = (this.proxy.protocol === 'https:' ? httpsRequest : httpRequest)({
      host: this.proxy.hostname,
      port: this.proxy.port || (this.proxy.protocol === 'https:' ? 443 : 80),
      method: 'CONNECT',
      path: target,
      headers: { host: target },
      ...(this.lookup ? { lookup: this.lookup } : {}),
    });
    connectRequest.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        callback(new Error(`proxy CONNECT answered ${res.statusCode}`));
        return;
      }
      const tls = tlsConnect({
        ...options,
        socket,
        servername: options.servername ?? options.host,
      });
      tls.once('secureConnect', () => callback(null, tls));
      tls.once('error', (err) => callback(err));
    });
    connectRequest.once('error', (err) => callback(err));
    connectRequest.end();
    return undefined;
  }
}

/** got's `request` option for requests through `proxyUrl`. */
export function proxiedRequest(
  proxyUrl: string,
  lookup: LookupFunction | undefined,
): ProxiedRequest {
  const proxy = new URL(proxyUrl);
  const tunnel = new TunnelAgent(proxy, lookup);
  return (url, options, callback) => {
    if (url.protocol === 'https:')
      return httpsRequest(url, { ...options, agent: tunnel }, callback);
    const viaProxy: RequestOptions = {
      ...options,
      protocol: proxy.protocol,
      hostname: proxy.hostname,
      host: proxy.hostname,
      port: proxy.port || (proxy.protocol === 'https:' ? 443 : 80),
      path: url.href,
      agent: undefined,
      headers: { ...options.headers, host: url.host },
      ...(lookup ? { lookup } : {}),
    };
    return (proxy.protocol === 'https:' ? httpsRequest : httpRequest)(viaProxy, callback);
  };
}
