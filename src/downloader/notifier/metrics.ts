/** The notifier's Prometheus metrics (spec §6), on its own registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerCommonMetrics } from '../boot.js';

export type BackendLabel = 'http' | 'kafka' | 'undefined';

export class NotifierMetrics {
  readonly redisErrors: Counter;
  readonly callbacks: Counter<'backend' | 'outcome'>;
  readonly sendDuration: Histogram<'backend'>;
  readonly latency: Histogram;
  readonly inFlight: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.redisErrors = registerCommonMetrics(registry);
    this.callbacks = new Counter({
      name: 'downloader_notifier_callbacks_total',
      help: 'Callback deliveries by backend and outcome',
      labelNames: ['backend', 'outcome'],
      registers,
    });
    this.sendDuration = new Histogram({
      name: 'downloader_notifier_send_duration_seconds',
      help: 'Time to send one callback',
      labelNames: ['backend'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    });
    this.latency = new Histogram({
      name: 'downloader_notifier_delivery_latency_seconds',
      help: 'Time from the end of the download to the delivered callback',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'downloader_notifier_callbacks_in_flight',
      help: 'Callbacks being sent now',
      registers,
    });
  }
}
