/**
 * Keeps the memory of large downloads bounded. Every socket read allocates a new buffer outside
 * the JavaScript heap, and a download drops each one within milliseconds, but V8 only collects
 * them once their total passes its external-memory limit (64 MiB) and a full, incremental
 * collection has run its course; meanwhile a fast transfer piles up more, so one 1 GiB download
 * grew the processor by 70 to 90 MiB. The buffers die young, so a minor collection (a scavenge of
 * the young generation, well under a millisecond on this heap) frees them: one after every
 * `everyBytes` of body received, across all downloads, keeps the pile near that size and spares
 * the full collections, which cost more CPU than the scavenges.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Body bytes received, across downloads, between two minor collections. */
export const GC_EVERY_BYTES = 8 * 1024 * 1024;

type Collect = (options: { type: 'minor' }) => void;

/**
 * V8's `gc` function without `--expose-gc` for the whole process (sea-config.json's execArgv could
 * pass it, but then every component's global object would carry `gc`): the flag only affects
 * contexts created after it is set, so it is set for the one context that hands the function
 * over, then cleared. Undefined if V8 refuses.
 */
function minorCollector(): Collect | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const collect: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof collect === 'function' ? (collect as Collect) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

export class GcHint {
  private readonly collect = minorCollector();
  private pending = 0;

  constructor(private readonly everyBytes = GC_EVERY_BYTES) {}

  /** Counts `bytes` of body just received; collects once `everyBytes` have come in. */
  received(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.everyBytes) return;
    this.pending = 0;
    this.collect?.({ type: 'minor' });
  }
}
