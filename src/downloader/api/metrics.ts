/** The api's Prometheus metrics (spec §6), on its own registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerCommonMetrics } from '../boot.js';
import type { QueueDepths } from '../bus.js';

export type ApiRoute = 'download' | 'retry' | 'hb' | 'stats' | 'dashboard' | 'metrics' | 'static';

export class ApiMetrics {
  readonly requests: Counter<'route' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly enqueued: Counter;
  readonly aggregationsCreated: Counter;
  readonly redisErrors: Counter;

  constructor(registry: Registry, depths: () => Promise<QueueDepths>) {
    this.redisErrors = registerCommonMetrics(registry);
    this.requests = new Counter({
      name: 'downloader_api_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'downloader_api_http_request_duration_seconds',
      help: 'Time to answer an HTTP request',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    this.enqueued = new Counter({
      name: 'downloader_api_jobs_enqueued_total',
      help: 'Jobs accepted (201)',
      registers: [registry],
    });
    this.aggregationsCreated = new Counter({
      name: 'downloader_api_aggregations_created_total',
      help: 'Aggregation records created',
      registers: [registry],
    });
    let cached: { at: number; value: QueueDepths } | undefined;
    const redisErrors = this.redisErrors;
    new Gauge({
      name: 'downloader_queue_jobs',
      help: 'Jobs per queue of the bus, read at scrape time (cached 5 s)',
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        if (!cached || Date.now() - cached.at > 5000) {
          try {
            cached = { at: Date.now(), value: await depths() };
          } catch {
            redisErrors.inc();
            return;
          }
        }
        for (const [queue, value] of Object.entries(cached.value) as [string, number][]) {
          this.set({ queue }, value);
        }
      },
    });
  }
}
