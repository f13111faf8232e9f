/** Builds a sink from its config. */
import type { Writable } from 'node:stream';
import { isAbsolute, join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { SinkConfig } from '../config.js';
import { FileSink } from './file.js';
import { KafkaSink } from './kafka.js';
import { RafkaSink } from './rafka.js';
import { RedisSink } from './redis.js';
import { StdoutSink } from './stdout.js';
import type { Sink } from './types.js';

export interface SinkContext {
  dataDir: string;
  instance: string;
  logger: Logger;
  stdout: Pick<Writable, 'write'>;
}

export function fileSinkRoot(config: SinkConfig & { type: 'file' }, dataDir: string): string {
  return isAbsolute(config.dir) ? config.dir : join(dataDir, config.dir);
}

export function createSink(name: string, config: SinkConfig, ctx: SinkContext): Sink {
  switch (config.type) {
    case 'file':
      return new FileSink(name, config, fileSinkRoot(config, ctx.dataDir), ctx.instance);
    case 'redis':
      return new RedisSink(name, config, ctx.logger);
    case 'kafka':
      return new KafkaSink(name, config, ctx.instance, ctx.logger);
    case 'rafka':
      return new RafkaSink(name, config);
    case 'stdout':
      return new StdoutSink(name, ctx.stdout);
  }
}
