import t from 'tap';
import { createLogger, levelFromEnv } from '../../src/common/logger.js';
import { ConfigError } from '../../src/common/errors.js';

function capture(): {
  lines: () => Record<string, unknown>[];
  stream: { write: (s: string) => boolean };
} {
  const chunks: string[] = [];
  return {
    stream: { write: (s: string) => chunks.push(s) > 0 },
    lines: () =>
      chunks
        .join('')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

t.test('writes one JSON line per call with bound and call fields', async (t) => {
  const out = capture();
  const log = createLogger({
    stream: out.stream,
    level: 'info',
    fields: { component: 'x' },
    now: () => 0,
  });
  log.child({ conn: 7 }).info('client connected', { addr: '127.0.0.1' });
  log.debug('hidden');
  t.same(out.lines(), [
    {
      time: '1970-01-01T00:00:00.000Z',
      level: 'info',
      msg: 'client connected',
      component: 'x',
      conn: 7,
      addr: '127.0.0.1',
    },
  ]);
});

t.test('errors are serialised with code and cause', async (t) => {
  const out = capture();
  const log = createLogger({ stream: out.stream, level: 'debug' });
  const err = new ConfigError('a.json', [{ path: 'k', rule: 'is required' }], {
    cause: new Error('root'),
  });
  log.error('boot failed', { err });
  const [line] = out.lines();
  t.match(line, {
    level: 'error',
    err: { name: 'ConfigError', code: 'ERR_CONFIG', cause: { message: 'root' } },
  });
});

t.test('levels filter and LOG_LEVEL is validated', async (t) => {
  const out = capture();
  const log = createLogger({ stream: out.stream, level: 'warn' });
  log.info('no');
  log.warn('yes');
  t.equal(out.lines().length, 1);
  t.equal(levelFromEnv({ LOG_LEVEL: 'DEBUG' }), 'debug');
  t.equal(levelFromEnv({}), 'info');
  t.throws(() => levelFromEnv({ LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of/);
});

t.test('bigints and cycles do not throw', async (t) => {
  const out = capture();
  const log = createLogger({ stream: out.stream, level: 'info' });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  log.info('big', { n: 10n });
  log.info('cyclic', { cyclic });
  const lines = out.lines();
  t.equal(lines[0]?.n, '10');
  t.equal(lines[1]?.unserializable, true);
});
