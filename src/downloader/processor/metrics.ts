/** The processor's Prometheus metrics (spec §6), on its own registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerCommonMetrics } from '../boot.js';

export class ProcessorMetrics {
  readonly redisErrors: Counter;
  readonly attempts: Counter<'outcome'>;
  readonly responses: Counter<'code'>;
  readonly errors: Counter<'kind'>;
  readonly duration: Histogram;
  readonly bytes: Counter;
  readonly inFlight: Gauge;
  readonly lanes: Gauge;
  readonly diskUsage: Gauge;
  readonly diskPaused: Gauge;
  readonly reaper: Counter<'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.redisErrors = registerCommonMetrics(registry);
    this.attempts = new Counter({
      name: 'downloader_processor_attempts_total',
      help: 'Download attempts by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.responses = new Counter({
      name: 'downloader_processor_responses_total',
      help: 'Origin responses by HTTP status',
      labelNames: ['code'],
      registers,
    });
    this.errors = new Counter({
      name: 'downloader_processor_errors_total',
      help: 'Failed attempts by kind of failure',
      labelNames: ['kind'],
      registers,
    });
    this.duration = new Histogram({
      name: 'downloader_processor_attempt_duration_seconds',
      help: 'Duration of one download attempt',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.bytes = new Counter({
      name: 'downloader_processor_downloaded_bytes_total',
      help: 'Body bytes received',
      registers,
    });
    this.inFlight = new Gauge({
      name: 'downloader_processor_downloads_in_flight',
      help: 'Downloads running now',
      registers,
    });
    this.lanes = new Gauge({
      name: 'downloader_processor_lanes',
      help: 'Open aggregation lanes',
      registers,
    });
    this.diskUsage = new Gauge({
      name: 'downloader_processor_disk_usage_ratio',
      help: 'Used share of the storage filesystem',
      registers,
    });
    this.diskPaused = new Gauge({
      name: 'downloader_processor_disk_paused',
      help: '1 while claiming is paused by the disk watermark',
      registers,
    });
    this.reaper = new Counter({
      name: 'downloader_processor_reaper_deletions_total',
      help: 'Stored files deleted after their callback, by result',
      labelNames: ['result'],
      registers,
    });
    for (const outcome of [
      'success',
      'retry',
      'failed',
      'internal_error',
      'shutdown_requeue',
      'reclaimed',
    ]) {
      this.attempts.inc({ outcome }, 0);
    }
  }
}
