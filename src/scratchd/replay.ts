/**
 * `scratchd replay` (§3.12): re-delivers stored events through one configured sink, with its
 * batching and retries but no spool, writing the original bytes unchanged.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ExitCode, type CliIo } from '../common/component.js';
import { UsageError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import type { ScratchdConfig } from './config.js';
import { backoffMs } from './dispatcher.js';
import { lockOwner } from './lock.js';
import { createSink } from './sinks/index.js';
import { metaFromEnvelope, type SinkEvent, type WriteResult } from './sinks/types.js';
import { Spool } from './spool.js';

export interface ReplayOptions {
  sink: string;
  from: string;
  tenant: string | undefined;
  since: string | undefined;
  until: string | undefined;
  dryRun: boolean;
  /** Print the summary as one JSON object instead of the `read=<n> ...` line. */
  json: boolean;
  io: CliIo;
  /** How long the sink may keep failing before replay gives up. Default 60 s. */
  giveUpMs?: number;
}

function listFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => listFiles(join(path, name)));
}

const DEAD_PREFIX = /^\{"at":\d+,"sink":"(?:[^"\\]|\\.)*","reason":"(?:[^"\\]|\\.)*","event":/;

/** One JSONL line as envelope bytes: dead-letter lines are unwrapped to their `event`. */
export function lineToEnvelope(line: string): Buffer | undefined {
  const prefix = DEAD_PREFIX.exec(line);
  if (prefix !== null && line.endsWith('}'))
    return Buffer.from(line.slice(prefix[0].length, -1), 'utf8');
  try {
    const parsed = JSON.parse(line) as { v?: unknown; event?: unknown };
    if (parsed.v === 1) return Buffer.from(line, 'utf8');
    if (typeof parsed.event === 'object' && parsed.event !== null)
      return Buffer.from(JSON.stringify(parsed.event));
  } catch {
    return undefined;
  }
  return undefined;
}

function readEvents(from: string): { events: Buffer[]; bad: number } {
  const events: Buffer[] = [];
  let bad = 0;
  for (const file of listFiles(from)) {
    if (file.endsWith('.seg')) {
      const owner = lockOwner(dirname(dirname(dirname(file))));
      if (owner !== undefined)
        throw new UsageError(`${file} belongs to a data_dir locked by running pid ${owner}`);
      continue;
    }
    if (!file.endsWith('.jsonl')) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const data = lineToEnvelope(line);
      if (data === undefined) bad += 1;
      else events.push(data);
    }
  }
  const segDirs = new Set(
    listFiles(from)
      .filter((f) => f.endsWith('.seg'))
      .map((f) => dirname(f)),
  );
  for (const dir of segDirs) events.push(...Spool.readAll(dir));
  return { events, bad };
}

function parseTime(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms))
    throw new UsageError(`${flag} must be an ISO 8601 time (got ${JSON.stringify(text)})`);
  return ms;
}

export async function runReplay(config: ScratchdConfig, options: ReplayOptions): Promise<number> {
  const sinkConfig = config.sinks[options.sink];
  if (sinkConfig === undefined)
    throw new UsageError(`--sink ${options.sink} names no sink in the config`);
  if (options.json && sinkConfig.type === 'stdout')
    throw new UsageError(
      `--json cannot be used with --sink ${options.sink}: it is a stdout sink, whose events would mix with the summary`,
    );
  const since = parseTime(options.since, '--since');
  const until = parseTime(options.until, '--until');
  const logger = createLogger({
    stream: options.io.stderr,
    fields: { component: 'scratchd', command: 'replay' },
  });
  const { events: all, bad } = readEvents(options.from);
  let skipped = bad;
  const chosen: SinkEvent[] = [];
  for (const data of all) {
    let meta;
    try {
      meta = metaFromEnvelope(data);
    } catch {
      skipped += 1;
      continue;
    }
    const keep =
      (options.tenant === undefined || meta.tenant === options.tenant) &&
      (since === undefined || meta.receivedAt >= since) &&
      (until === undefined || meta.receivedAt < until);
    if (keep) chosen.push({ data, meta });
    else skipped += 1;
  }
  let written = 0;
  let failed = 0;
  if (!options.dryRun && chosen.length > 0) {
    const sink = createSink(options.sink, sinkConfig, {
      dataDir: config.data_dir,
      instance: `${config.instance}-replay`,
      logger,
      stdout: options.io.stdout,
    });
    try {
      for (let at = 0; at < chosen.length;) {
        let bytes = 0;
        let end = at;
        while (end < chosen.length && end - at < sinkConfig.batch_events) {
          bytes += chosen[end]?.data.length ?? 0;
          if (end > at && bytes > sinkConfig.batch_bytes) break;
          end += 1;
        }
        const batch = chosen.slice(at, end);
        const result = await writeWithRetry(
          sink.write.bind(sink),
          batch,
          sinkConfig,
          options.giveUpMs ?? 60_000,
        );
        if (result === undefined) {
          failed += chosen.length - at;
          logger.error('sink kept failing, giving up', {
            sink: options.sink,
            remaining: chosen.length - at,
          });
          break;
        }
        for (const refused of result)
          logger.warn('the sink refused an event', {
            sink: options.sink,
            id: batch[refused.index]?.meta.id,
            reason: refused.reason,
          });
        failed += result.length;
        written += batch.length - result.length;
        at = end;
      }
    } finally {
      await sink.close().catch(() => undefined);
    }
  }
  const counts = { read: all.length + bad, written: options.dryRun ? 0 : written, skipped, failed };
  options.io.stdout.write(
    options.json
      ? `${JSON.stringify({ ok: failed === 0, ...counts })}\n`
      : `read=${counts.read} written=${counts.written} skipped=${skipped} failed=${failed}\n`,
  );
  if (options.dryRun) logger.info('dry run', { would_write: chosen.length });
  return failed === 0 ? ExitCode.ok : ExitCode.failure;
}

/**
 * Resolves with the events the sink refused for good, or undefined once it failed for `giveUpMs`.
 */
async function writeWithRetry(
  write: (batch: readonly SinkEvent[]) => Promise<WriteResult>,
  batch: SinkEvent[],
  config: { backoff_base_ms: number; backoff_max_ms: number },
  giveUpMs: number,
): Promise<WriteResult['fatal'] | undefined> {
  const started = Date.now();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return (await write(batch)).fatal;
    } catch {
      if (Date.now() - started > giveUpMs) return undefined;
      await new Promise((r) =>
        setTimeout(r, backoffMs(attempt, config.backoff_base_ms, config.backoff_max_ms) + 10),
      );
    }
  }
}
