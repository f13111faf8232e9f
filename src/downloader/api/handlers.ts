/**
 * The api's endpoints, each answering with the original's status codes and texts: `POST
 * /download` in its validation order, `/retry/<id>`, `/hb`, `/stats/<id>` and
 * `/dashboard/aggregations`.
 */
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../common/logger.js';
import type { JobBus } from '../bus.js';
import {
  formatJob,
  JobValidationError,
  newJobId,
  parseBody,
  validateAggregation,
  validateJob,
  type JobSpec,
} from '../job.js';
import { BodyTooLargeError, lastSegment, readBody, sendError, sendText } from './http-util.js';
import type { ApiMetrics } from './metrics.js';

export interface HandlerContext {
  bus: JobBus;
  logger: Logger;
  metrics: ApiMetrics;
  downloadUrl: string;
  maxBodyBytes: number;
  heartbeatPath: string;
}

const CORS = { 'Access-Control-Allow-Origin': '*' };

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function validationMessage(err: unknown): string {
  if (err instanceof JobValidationError) return err.message;
  throw err;
}

async function pickId(ctx: HandlerContext): Promise<string | undefined> {
  for (let i = 0; i < 3; i++) {
    const id = newJobId();
    if (!(await ctx.bus.jobExists(id))) return id;
  }
  return undefined;
}

export async function handleDownload(
  ctx: HandlerContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.method !== 'POST') return sendError(res, 405, 'Invalid request method');
  let body: string;
  try {
    body = await readBody(req, ctx.maxBodyBytes);
  } catch (err) {
    const text = err instanceof BodyTooLargeError ? err.message : reason(err);
    return sendError(res, 400, `Error reading request body: ${text}`);
  }
  let job: JobSpec;
  let parsed: Record<string, unknown>;
  try {
    parsed = parseBody(body);
    job = validateJob(parsed);
  } catch (err) {
    return sendError(
      res,
      400,
      `Error unmarshalling body '${body}' to Job: ${validationMessage(err)}`,
    );
  }
  let id: string | undefined;
  try {
    id = await pickId(ctx);
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(
      res,
      500,
      `Error fetching ${formatJob(job, ctx.downloadUrl)} from Redis: ${reason(err)}`,
    );
  }
  if (id === undefined) {
    return sendError(
      res,
      500,
      `Could not find unique ID after 3 tries for ${formatJob(job, ctx.downloadUrl)}`,
    );
  }
  job.id = id;
  let aggregation;
  try {
    aggregation = validateAggregation(parsed);
  } catch (err) {
    return sendError(
      res,
      400,
      `Error unmarshalling body '${body}' to Aggregation: ${validationMessage(err)}`,
    );
  }
  const jobText = (): string => formatJob(job, ctx.downloadUrl);
  try {
    if (await ctx.bus.ensureAggregation(aggregation)) {
      ctx.metrics.aggregationsCreated.inc();
      ctx.logger.info('aggregation_save', {
        aggregation_id: aggregation.id,
        aggregation_limit: aggregation.limit,
      });
    }
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(res, 500, `Error persisting aggregation for ${jobText()}: ${reason(err)}`);
  }
  try {
    if (!(await ctx.bus.enqueue(job, ctx.downloadUrl))) throw new Error(`job id ${id} is taken`);
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(res, 500, `Error queueing ${jobText()}: ${reason(err)}`);
  }
  ctx.metrics.enqueued.inc();
  ctx.logger.info('job_enqueue', {
    aggregation_id: job.aggr_id,
    aggregation_limit: aggregation.limit,
    job_id: id,
    job_url: job.url,
  });
  sendText(res, 201, `{"id":"${id}"}`);
}

export async function handleRetry(
  ctx: HandlerContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  if (req.method !== 'POST') return sendError(res, 405, 'Invalid request method');
  const id = lastSegment(path);
  let record;
  try {
    record = await ctx.bus.getRecord(id);
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(res, 400, `Error fetching ${id} from Redis: ${reason(err)}`);
  }
  if (!record) return sendError(res, 400, `Error fetching ${id} from Redis: Not Found`);
  const jobText = formatJob(record.spec, record.downloadUrl, record.imageSize);
  if (record.callbackState !== 'Failed') {
    return sendError(
      res,
      400,
      `Error with callback state of the job ${jobText}: ${record.callbackState}`,
    );
  }
  try {
    const result = await ctx.bus.retryCallback(id);
    if (result.kind === 'missing')
      return sendError(res, 400, `Error fetching ${id} from Redis: Not Found`);
    if (result.kind === 'state') {
      return sendError(
        res,
        400,
        `Error with callback state of the job ${jobText}: ${result.state}`,
      );
    }
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(
      res,
      500,
      `Error rescheduling callback for job with id '${id}': ${reason(err)}`,
    );
  }
  res.writeHead(204);
  res.end();
}

export async function handleHeartbeat(ctx: HandlerContext, res: ServerResponse): Promise<void> {
  if (ctx.heartbeatPath !== '') {
    let disabled = true;
    try {
      await stat(ctx.heartbeatPath);
    } catch (err) {
      disabled = (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
    if (disabled) return sendError(res, 503, `Service disabled, '${ctx.heartbeatPath}' exists!`);
  }
  sendText(res, 200, 'OK');
}

/** Go's map printing of the original: sorted keys, `": "` and `", "` separators. */
export function formatStats(stats: Record<string, number>): string {
  const keys = Object.keys(stats).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${stats[k] ?? 0}`).join(', ')}}`;
}

export async function handleStats(
  ctx: HandlerContext,
  res: ServerResponse,
  rawTarget: string,
): Promise<void> {
  const id = rawTarget.slice(rawTarget.lastIndexOf('/') + 1);
  let stats: Record<string, number> | undefined;
  if (id === 'processor' || id === 'notifier') {
    try {
      stats = await ctx.bus.mergedStats(id);
    } catch (err) {
      ctx.metrics.redisErrors.inc();
      return sendError(res, 500, reason(err));
    }
  }
  if (!stats) {
    res.setHeader('Access-Control-Allow-Origin', '*');
    return sendError(res, 404, `Could not find stats for entity ${id}`);
  }
  const body = formatStats(stats);
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...CORS,
  });
  res.end(body);
}

export async function handleAggregations(ctx: HandlerContext, res: ServerResponse): Promise<void> {
  let waiting;
  try {
    waiting = await ctx.bus.waitingByAggregation();
  } catch (err) {
    ctx.metrics.redisErrors.inc();
    return sendError(res, 500, `Error scanning for aggregation keys: ${reason(err)}`);
  }
  const body = JSON.stringify(waiting.map((w) => ({ name: `jobs:${w.aggr}`, size: w.size })));
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...CORS,
  });
  res.end(body);
}
