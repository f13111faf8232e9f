import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  applyOverrides,
  array,
  envOverrides,
  hostPort,
  integer,
  object,
  oneOf,
  parseConfig,
  readJsonFile,
  record,
  required,
  string,
  withDefault,
} from '../../src/common/config.js';
import { ConfigError } from '../../src/common/errors.js';

const schema = object({
  listen: withDefault(hostPort(), { host: '0.0.0.0', port: 8080 }),
  workers: withDefault(integer({ min: 1, max: 64 }), 4),
  mode: withDefault(oneOf(['fast', 'safe']), 'safe'),
  name: required(string({ nonEmpty: true })),
  tags: withDefault(array(string()), () => []),
  sinks: withDefault(record(object({ url: required(string()) }), /^[a-z]+$/), () => ({})),
});

function issuesOf(input: unknown): ConfigError {
  try {
    parseConfig(schema, input, 'test.json');
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

t.test('defaults fill what the file leaves out', async (t) => {
  const { value } = parseConfig(schema, { name: 'a' }, 'test.json');
  t.same(value, {
    listen: { host: '0.0.0.0', port: 8080 },
    workers: 4,
    mode: 'safe',
    name: 'a',
    tags: [],
    sinks: {},
  });
});

const bad: Array<{ label: string; input: unknown; path: string; rule: RegExp }> = [
  {
    label: 'unknown key',
    input: { name: 'a', wrokers: 2 },
    path: 'wrokers',
    rule: /not a known key/,
  },
  {
    label: 'wrong type',
    input: { name: 'a', workers: '4' },
    path: 'workers',
    rule: /integer from 1 to 64/,
  },
  {
    label: 'out of range',
    input: { name: 'a', workers: 0 },
    path: 'workers',
    rule: /integer from 1 to 64/,
  },
  { label: 'fraction', input: { name: 'a', workers: 1.5 }, path: 'workers', rule: /integer/ },
  { label: 'missing required', input: {}, path: 'name', rule: /is required/ },
  { label: 'bad enum', input: { name: 'a', mode: 'quick' }, path: 'mode', rule: /"fast", "safe"/ },
  {
    label: 'bad host:port',
    input: { name: 'a', listen: 'x:99999' },
    path: 'listen',
    rule: /host:port/,
  },
  { label: 'array item', input: { name: 'a', tags: ['x', 3] }, path: 'tags[1]', rule: /string/ },
  {
    label: 'nested key',
    input: { name: 'a', sinks: { main: { url: 1 } } },
    path: 'sinks.main.url',
    rule: /string/,
  },
  {
    label: 'record name',
    input: { name: 'a', sinks: { Bad: { url: 'x' } } },
    path: 'sinks.Bad',
    rule: /must match/,
  },
  { label: 'not an object', input: [], path: '', rule: /must be an object/ },
];

for (const c of bad) {
  t.test(c.label, async (t) => {
    const err = issuesOf(c.input);
    t.equal(err.code, 'ERR_CONFIG');
    const issue = err.issues.find((i) => i.path === c.path);
    t.ok(issue, `an issue at ${c.path}`, { issues: err.issues });
    t.match(issue?.rule, c.rule);
    t.match(err.message, 'test.json');
  });
}

t.test('every problem is reported at once, with the value', async (t) => {
  const err = issuesOf({ workers: 'x', mode: 1, extra: true });
  t.same(err.issues.map((i) => i.path).sort(), ['extra', 'mode', 'name', 'workers']);
  t.match(err.message, /workers: must be an integer from 1 to 64 \(got "x"\)/);
});

t.test('warn collects unknown keys instead of failing', async (t) => {
  const lenient = object({ a: withDefault(integer(), 1) }, 'warn');
  const { value, warnings } = parseConfig(lenient, { a: 2, b: 3 }, 'x');
  t.same(value, { a: 2 });
  t.same(warnings, ['b']);
});

t.test('readJsonFile names the file and the problem', async (t) => {
  const dir = t.testdir({ 'bad.json': '{"a": 1,', 'good.json': '{"a": 1}' });
  await t.rejects(readJsonFile(join(dir, 'bad.json')), {
    code: 'ERR_CONFIG',
    message: /bad\.json[\s\S]*not valid JSON/,
  });
  await t.rejects(readJsonFile(join(dir, 'missing.json')), {
    code: 'ERR_CONFIG',
    message: /file not found/,
  });
  t.same(await readJsonFile(join(dir, 'good.json')), { a: 1 });
  await writeFile(join(dir, 'array.json'), '[1]');
  t.same(await readJsonFile(join(dir, 'array.json')), [1]);
});

t.test('flags override the environment, which overrides the file', async (t) => {
  const file = { name: 'file', workers: 2, listen: '127.0.0.1:1' };
  const env = envOverrides(
    { APP_WORKERS: '8', APP_NAME: 'env' },
    { APP_WORKERS: 'workers', APP_NAME: 'name' },
  );
  const flags = [{ path: 'name', value: 'flag' }];
  const raw = applyOverrides(file, [...env, ...flags]);
  const { value } = parseConfig(schema, raw, 'test.json');
  t.equal(value.name, 'flag');
  t.equal(value.workers, 8);
  t.same(value.listen, { host: '127.0.0.1', port: 1 });
  t.equal(file.name, 'file', 'the raw file object is not mutated');
});

t.test('overrides create nested objects and are checked like the file', async (t) => {
  const raw = applyOverrides({ name: 'a' }, [{ path: 'sinks.main.url', value: 5 }]);
  t.same(raw, { name: 'a', sinks: { main: { url: 5 } } });
  const err = issuesOf(raw);
  t.equal(err.issues[0]?.path, 'sinks.main.url');
});
