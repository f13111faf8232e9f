/**
 * The admin listener every long-running component serves: `/metrics` (its own registry in the
 * Prometheus text format) and `/healthz` (200 while healthy, 503 with the reasons otherwise).
 * Components may add routes of their own, such as scratchd's `/readyz`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';
import { closeServer, listen } from './net.js';

export interface HealthReport {
  healthy: boolean;
  /** Free-form details, served as JSON; keep it small. */
  details?: Record<string, unknown>;
}

export type AdminRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port; the bound one is in `address`. */
  port: number;
  registry: Registry;
  logger: Logger;
  health: () => HealthReport;
  /** Extra GET routes by exact path. */
  routes?: Record<string, AdminRoute>;
  /** Told of every answered request (its path without the query, and the status sent). */
  observe?: (path: string, status: number) => void;
}

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function serveMetrics(registry: Registry, res: ServerResponse): Promise<void> {
  const text = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType });
  res.end(text);
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const log = options.logger.child({ listener: 'admin' });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method not allowed' });
      return;
    }
    if (path === '/metrics') return serveMetrics(options.registry, res);
    if (path === '/healthz') {
      const report = options.health();
      sendJson(res, report.healthy ? 200 : 503, {
        status: report.healthy ? 'ok' : 'unhealthy',
        ...report.details,
      });
      return;
    }
    const route = options.routes?.[path];
    if (route) return route(req, res);
    sendJson(res, 404, { error: 'not found' });
  };
  const observe = options.observe;
  const server: Server = createServer((req, res) => {
    if (observe)
      res.once('finish', () => observe((req.url ?? '/').split('?')[0] ?? '/', res.statusCode));
    handle(req, res).catch((err: unknown) => {
      log.error('admin request failed', { err, path: req.url });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  const address = await listen(server, options.port, options.host);
  log.info('admin listener ready', { host: address.address, port: address.port });
  return { address, close: () => closeServer(server, 2000) };
}
