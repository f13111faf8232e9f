/**
 * mistry-server metrics (spec §6). The original series keep their exact names (no `_total`),
 * types, single `project` label and buckets, so existing dashboards keep working.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function createMetrics(registry: Registry) {
  const registers = [registry];
  const byProject = { labelNames: ['project'] as const, registers };
  return {
    buildsHosted: new Gauge({
      name: 'mistry_builds_hosted',
      help: 'Ready builds on disk',
      ...byProject,
    }),
    buildsStarted: new Counter({
      name: 'mistry_builds_started',
      help: 'Accepted build requests (cache hits and coalesced included)',
      ...byProject,
    }),
    buildsFinished: new Counter({
      name: 'mistry_builds_finished',
      help: 'Containers that ran to an exit',
      ...byProject,
    }),
    buildsCoalesced: new Counter({
      name: 'mistry_builds_coalesced',
      help: 'Requests answered from an identical in-flight build',
      ...byProject,
    }),
    buildsIncremental: new Counter({
      name: 'mistry_builds_processed_incrementally',
      help: 'Successful incremental builds',
      ...byProject,
    }),
    succeededSeconds: new Histogram({
      name: 'mistry_builds_succeeded_seconds',
      help: 'Duration of builds whose container exited 0',
      buckets: [120, 240, 360],
      ...byProject,
    }),
    failedSeconds: new Histogram({
      name: 'mistry_builds_failed_seconds',
      help: 'Duration of builds whose container exited non-zero',
      buckets: [120, 240, 360],
      ...byProject,
    }),
    cacheUtilization: new Counter({
      name: 'mistry_cache_utilization',
      help: 'Requests served from the result cache',
      ...byProject,
    }),
    buildTimeouts: new Counter({
      name: 'mistry_build_timeouts_total',
      help: 'Builds stopped by the build timeout',
      ...byProject,
    }),
    buildsInterrupted: new Counter({
      name: 'mistry_builds_interrupted_total',
      help: 'Builds stopped by shutdown or found unfinished at start',
      labelNames: ['project', 'reason'] as const,
      registers,
    }),
    buildErrors: new Counter({
      name: 'mistry_build_errors_total',
      help: 'Server-side build failures (answered 500)',
      labelNames: ['project', 'stage'] as const,
      registers,
    }),
    setupSeconds: new Histogram({
      name: 'mistry_build_setup_seconds',
      help: 'Time to create or clone the job dir',
      labelNames: ['project', 'filesystem', 'incremental'] as const,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60],
      registers,
    }),
    imageBuildSeconds: new Histogram({
      name: 'mistry_image_build_seconds',
      help: 'Image build time',
      buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600],
      ...byProject,
    }),
    queueDepth: new Gauge({
      name: 'mistry_queue_depth',
      help: 'Builds waiting for a slot',
      registers,
    }),
    workersBusy: new Gauge({ name: 'mistry_workers_busy', help: 'Builds executing', registers }),
    coalescedWaiters: new Gauge({
      name: 'mistry_coalesced_waiters',
      help: 'Requests waiting on an identical in-flight build',
      registers,
    }),
    requestsRejected: new Counter({
      name: 'mistry_requests_rejected_total',
      help: 'Refused requests',
      labelNames: ['reason'] as const,
      registers,
    }),
    httpRequests: new Counter({
      name: 'mistry_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'code'] as const,
      registers,
    }),
    artifactBytes: new Counter({
      name: 'mistry_artifact_bytes_sent_total',
      help: 'Artifact bytes sent over HTTP',
      ...byProject,
    }),
    logSubscribers: new Gauge({
      name: 'mistry_log_subscribers',
      help: 'Open SSE and NDJSON log streams',
      registers,
    }),
    gcRuns: new Counter({ name: 'mistry_gc_runs_total', help: 'GC runs', registers }),
    gcReclaimedBytes: new Counter({
      name: 'mistry_gc_reclaimed_bytes_total',
      help: 'Free space gained by GC (statfs delta)',
      registers,
    }),
    gcRemoved: new Counter({
      name: 'mistry_gc_removed_builds_total',
      help: 'Builds removed by GC',
      labelNames: ['project', 'reason'] as const,
      registers,
    }),
    buildPathUsed: new Gauge({
      name: 'mistry_build_path_used_ratio',
      help: 'Used fraction of the build_path filesystem',
      registers,
    }),
    rsyncUp: new Gauge({
      name: 'mistry_rsync_daemon_up',
      help: 'rsync daemon running (1) or not',
      registers,
    }),
    rsyncRestarts: new Counter({
      name: 'mistry_rsync_daemon_restarts_total',
      help: 'rsync daemon restarts',
      registers,
    }),
  };
}

export type MistryMetrics = ReturnType<typeof createMetrics>;
