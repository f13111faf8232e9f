/** Dead-letter files (§3.9): `data_dir/dead/<sink>/<YYYY-MM-DD>.jsonl`, fsync'd per write. */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

export class DeadLetter {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly root: string) {}

  write(sink: string, reason: string, events: readonly Buffer[]): Promise<void> {
    const run = this.chain.then(() => this.append(sink, reason, events));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async append(sink: string, reason: string, events: readonly Buffer[]): Promise<void> {
    const at = Date.now();
    const dir = join(this.root, sink);
    await mkdir(dir, { recursive: true });
    const head = `{"at":${at},"sink":${JSON.stringify(sink)},"reason":${JSON.stringify(reason)},"event":`;
    const lines = events.map((e) => `${head}${e.toString('utf8')}}\n`).join('');
    const handle = await open(join(dir, `${new Date(at).toISOString().slice(0, 10)}.jsonl`), 'a');
    try {
      await handle.write(lines);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
