// Operator commands end to end (spec §3.1, §3.12, issue 7): `check` and `replay`, each in the
// human form (unchanged) and with `--json`, on success and on failure, through the built
// executable.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runCli } from '../helpers/cli.js';
import { KAFKA_BROKERS, uniqueId } from '../helpers/services.js';
import { archived, tempDir, writeConfig } from './helpers/harness.js';
import { createTopics } from './helpers/services.js';

interface Case {
  name: string;
  args: string[];
  code: number;
  /** The whole of stdout: a string for the human form, the one parsed object for `--json`. */
  stdout: string | Record<string, unknown>;
  /** stderr must match; when absent, stderr must be empty. */
  stderr?: RegExp;
  /** Further checks once the command exited. */
  then?: (t: Test) => void;
}

function envelope(id: string, tenant: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    v: 1,
    id,
    tenant,
    received_at: 1_764_800_000_000,
    type: 'custom',
    ...extra,
  });
}

t.test('check and replay, human and --json, success and failure', async (t) => {
  const dir = tempDir(t);
  const topic = uniqueId('scr-op');
  // A topic that refuses the big event below, so replay has an event it cannot deliver.
  await createTopics(t, [{ topic, configEntries: [{ name: 'max.message.bytes', value: '1024' }] }]);
  const good = writeConfig(dir, {
    tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
    sinks: {
      archive: { type: 'file', linger_ms: 5 },
      out: { type: 'stdout', linger_ms: 5 },
      k: { type: 'kafka', brokers: KAFKA_BROKERS, topic, compression: 'none', linger_ms: 5 },
    },
  });
  const bad = join(dir, 'bad.json');
  writeFileSync(
    bad,
    JSON.stringify({
      data_dir: join(dir, 'data'),
      tenants: { gr: { hosts: ['*'], sinks: ['archive'] } },
      sinks: { archive: { type: 'file', linger_ms: -7 } },
    }),
  );
  const missing = join(dir, 'missing.json');
  const archive = join(dir, 'archive.jsonl');
  const grLines = [envelope('r-1', 'gr'), envelope('r-2', 'gr')];
  writeFileSync(
    archive,
    [grLines[0], envelope('u-1', 'uk'), 'not json', grLines[1], ''].join('\n'),
  );
  const oversize = join(dir, 'oversize.jsonl');
  writeFileSync(
    oversize,
    [
      envelope('s-1', 'gr'),
      envelope('s-big', 'gr', { props: { blob: randomBytes(2048).toString('hex') } }),
      '',
    ].join('\n'),
  );
  const replay = (config: string, sink: string, from: string, ...rest: string[]): string[] => [
    'scratchd',
    'replay',
    '--config',
    config,
    '--sink',
    sink,
    '--from',
    from,
    ...rest,
  ];
  const badLine = /^sinks\.archive\.linger_ms: must be an integer from 0 to 60000 \(got -7\)$/m;
  const badProblems = {
    ok: false,
    problems: [
      { path: 'sinks.archive.linger_ms', message: 'must be an integer from 0 to 60000 (got -7)' },
    ],
  };

  const cases: Case[] = [
    {
      name: 'check, valid',
      args: ['scratchd', 'check', '--config', good],
      code: 0,
      stdout: 'ok: 1 tenants, 3 sinks',
    },
    {
      name: 'check --json, valid',
      args: ['scratchd', 'check', '--config', good, '--json'],
      code: 0,
      stdout: { ok: true, tenants: 1, sinks: 3 },
    },
    {
      name: 'check, invalid value',
      args: ['scratchd', 'check', '--config', bad],
      code: 1,
      stdout: '',
      stderr: badLine,
    },
    {
      name: 'check --json, invalid value',
      args: ['scratchd', 'check', '--json', '--config', bad],
      code: 1,
      stdout: badProblems,
    },
    {
      name: 'check --json, missing file',
      args: ['scratchd', 'check', '--json', '--config', missing],
      code: 1,
      stdout: { ok: false, problems: [{ path: '', message: `${missing}: file not found` }] },
    },
    {
      name: 'replay, dry run',
      args: replay(good, 'archive', archive, '--tenant', 'gr', '--dry-run'),
      code: 0,
      stdout: 'read=4 written=0 skipped=2 failed=0',
      stderr: /"msg":"dry run"/,
    },
    {
      name: 'replay --json, dry run',
      args: replay(good, 'archive', archive, '--tenant', 'gr', '--dry-run', '--json'),
      code: 0,
      stdout: { ok: true, read: 4, written: 0, skipped: 2, failed: 0 },
      stderr: /"msg":"dry run"/,
    },
    {
      name: 'replay --json, into the file sink',
      args: replay(good, 'archive', archive, '--tenant', 'gr', '--json'),
      code: 0,
      stdout: { ok: true, read: 4, written: 2, skipped: 2, failed: 0 },
      then: (t) =>
        t.same(
          archived(join(dir, 'data', 'events')).map((e) => e.id),
          ['r-1', 'r-2'],
          'both gr events archived',
        ),
    },
    {
      name: 'replay, into the stdout sink: events, then the summary',
      args: replay(good, 'out', archive, '--tenant', 'gr'),
      code: 0,
      stdout: [...grLines, 'read=4 written=2 skipped=2 failed=0'].join('\n'),
    },
    {
      name: 'replay, an event the sink refuses',
      args: replay(good, 'k', oversize),
      code: 1,
      stdout: 'read=2 written=1 skipped=0 failed=1',
      stderr: /"msg":"the sink refused an event".*"id":"s-big".*too large/,
    },
    {
      name: 'replay --json, an event the sink refuses',
      args: replay(good, 'k', oversize, '--json'),
      code: 1,
      stdout: { ok: false, read: 2, written: 1, skipped: 0, failed: 1 },
      stderr: /"msg":"the sink refused an event".*"id":"s-big".*too large/,
    },
    {
      name: 'replay, invalid config',
      args: replay(bad, 'archive', archive),
      code: 1,
      stdout: '',
      stderr: badLine,
    },
    {
      name: 'replay --json, invalid config',
      args: replay(bad, 'archive', archive, '--json'),
      code: 1,
      stdout: badProblems,
    },
    {
      name: 'replay, bad --since',
      args: replay(good, 'archive', archive, '--since', 'yesterday'),
      code: 2,
      stdout: '',
      stderr: /--since must be an ISO 8601 time \(got "yesterday"\)/,
    },
    {
      name: 'replay --json, bad --since stays a stderr message',
      args: replay(good, 'archive', archive, '--since', 'yesterday', '--json'),
      code: 2,
      stdout: '',
      stderr: /--since must be an ISO 8601 time \(got "yesterday"\)/,
    },
    {
      name: 'replay --json refuses a stdout sink',
      args: replay(good, 'out', archive, '--json'),
      code: 2,
      stdout: '',
      stderr: /--json cannot be used with --sink out: it is a stdout sink/,
    },
  ];

  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const run = await runCli(t, c.args);
      t.equal(run.code, c.code, `exit ${c.code}`, { stderr: run.stderr });
      if (typeof c.stdout === 'string') {
        t.equal(run.stdout, c.stdout, 'stdout');
      } else {
        const lines = run.stdout.split('\n');
        t.equal(lines.length, 1, 'one line of JSON', { stdout: run.stdout });
        t.same(JSON.parse(lines[0] ?? '') as unknown, c.stdout, 'stdout as JSON');
      }
      if (c.stderr === undefined) t.equal(run.stderr, '', 'nothing on stderr');
      else t.match(run.stderr, c.stderr, 'stderr');
      c.then?.(t);
    });
  }
});

t.test('--help documents --json for check and replay', async (t) => {
  const help = await runCli(t, ['scratchd', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /check \[--config F\] \[--json\]/);
  t.match(help.stdout, /Options \(check\):[\s\S]*--json[\s\S]*Options \(replay\):[\s\S]*--json/);
});
