/** The api's HTTP server: routing by the original's ServeMux rules, plus `/metrics`. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { dashboardHtml, hostsScript } from './dashboard.js';
import {
  handleAggregations,
  handleDownload,
  handleHeartbeat,
  handleRetry,
  handleStats,
  type HandlerContext,
} from './handlers.js';
import { cleanPath, sendError } from './http-util.js';
import type { ApiRoute } from './metrics.js';

export interface ApiServerOptions extends HandlerContext {
  registry: Registry;
  dashboardHosts: string[];
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(301, { Location: location, 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<a href="${location}">Moved Permanently</a>.\n\n`);
}

type Handler = () => Promise<void> | void;

function route(
  options: ApiServerOptions,
  req: IncomingMessage,
  res: ServerResponse,
): [ApiRoute, Handler] {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  const path = q >= 0 ? target.slice(0, q) : target;
  const query = q >= 0 ? target.slice(q) : '';
  const cleaned = cleanPath(path);
  if (cleaned !== path) return ['static', () => redirect(res, cleaned + query)];
  if (path === '/download') return ['download', () => handleDownload(options, req, res)];
  if (path === '/retry' || path === '/stats')
    return ['static', () => redirect(res, `${path}/${query}`)];
  if (path.startsWith('/retry/')) return ['retry', () => handleRetry(options, req, res, path)];
  if (path.startsWith('/stats/')) return ['stats', () => handleStats(options, res, target)];
  if (path === '/hb') return ['hb', () => handleHeartbeat(options, res)];
  if (path === '/dashboard/aggregations')
    return ['dashboard', () => handleAggregations(options, res)];
  const get = req.method === 'GET' || req.method === 'HEAD';
  if (path === '/metrics' && get) {
    return [
      'metrics',
      async () => {
        const text = await options.registry.metrics();
        res.writeHead(200, { 'Content-Type': options.registry.contentType });
        res.end(text);
      },
    ];
  }
  const withHosts = options.dashboardHosts.length > 0;
  if ((path === '/' || path === '/index.html') && get) {
    return [
      'static',
      () => {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(dashboardHtml(withHosts));
      },
    ];
  }
  if (path === '/hosts.js' && withHosts && get) {
    return [
      'static',
      () => {
        res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
        res.end(hostsScript(options.dashboardHosts));
      },
    ];
  }
  return ['static', () => sendError(res, 404, '404 page not found')];
}

export function createApiServer(options: ApiServerOptions): Server {
  return createServer((req, res) => {
    const started = process.hrtime.bigint();
    const [name, handler] = route(options, req, res);
    res.on('finish', () => {
      options.metrics.requests.inc({ route: name, status: String(res.statusCode) });
      options.metrics.duration.observe(
        { route: name },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    });
    Promise.resolve()
      .then(handler)
      .catch((err: unknown) => {
        options.logger.error('request_error', { err, path: req.url });
        if (!res.headersSent) sendError(res, 500, 'Internal Server Error');
        else res.destroy();
      });
  });
}
