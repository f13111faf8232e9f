/** Small promise wrappers around node:net listeners, shared by every server we run. */
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Server as HttpServer } from 'node:http';

/** Starts listening; rejects with the listen error (EADDRINUSE and the like). */
export function listen(server: NetServer, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting, lets open requests finish for up to `graceMs`, then cuts what is left. Never
 * rejects: a server that was not listening is already closed.
 */
export function closeServer(server: NetServer | HttpServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    const http = server as Partial<HttpServer>;
    http.closeIdleConnections?.();
    const timer = setTimeout(() => http.closeAllConnections?.(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** `host:port` for logs, with IPv6 hosts bracketed. */
export function formatAddress(address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${host}:${address.port}`;
}
