/**
 * Metrics: each component builds its own prom-client Registry (never the global default one), so
 * two components or two tests in one process never share a counter. The default process metrics
 * (heap, event-loop lag, active handles) are what watching goroutines and heap was in Go.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Component name, added as the `component` label on every metric. */
  component: string;
  /** Whether to collect the default process metrics. Default true. */
  processMetrics?: boolean;
}

export function createRegistry(options: MetricsOptions): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component: options.component });
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  }
  return registry;
}
