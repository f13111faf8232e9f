/** The disk watermark: claiming pauses above `high_pct` used and resumes at or below `low_pct`. */
import { statfs } from 'node:fs/promises';

export interface FsUsage {
  blocks: number;
  bfree: number;
}

export type StatFs = (path: string) => Promise<FsUsage>;

export const realStatFs: StatFs = async (path) => {
  const s = await statfs(path);
  return { blocks: s.blocks, bfree: s.bfree };
};

export class DiskWatermark {
  paused = false;
  usage = 0;

  constructor(
    private readonly highPct: number,
    private readonly lowPct: number,
  ) {}

  /** Feeds one measurement; returns 'paused' or 'resumed' when the state changed. */
  update(fs: FsUsage): 'paused' | 'resumed' | undefined {
    this.usage = fs.blocks > 0 ? (fs.blocks - fs.bfree) / fs.blocks : 0;
    const pct = this.usage * 100;
    if (!this.paused && pct > this.highPct) {
      this.paused = true;
      return 'paused';
    }
    if (this.paused && pct <= this.lowPct) {
      this.paused = false;
      return 'resumed';
    }
    return undefined;
  }
}
