import type { CliIo } from '../../common/component.js';
import { NotImplementedError } from '../../common/errors.js';

/** Placeholder until the component lands: the subcommand exists but refuses to start. */
export function main(_argv: string[], _io: CliIo): Promise<number> {
  return Promise.reject(new NotImplementedError('the downloader-notifier component'));
}
