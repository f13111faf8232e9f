// Pure pieces of mistry: BuildInfo formats, job IDs, request decoding, client params and
// durations, and the tar writer/reader (whole, byte by byte and split at every offset).
import {
  mkdtemp,
  mkdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
  lstat,
} from 'node:fs/promises';
import { close as fsClose, open as fsOpen, read as fsRead } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import t from 'tap';
import {
  formatIndexTime,
  formatRfc3339,
  orderedBuildInfo,
  type BuildInfo,
} from '../../src/mistry/build-info.js';
import { computeJobId, type FileFingerprint } from '../../src/mistry/job-id.js';
import { decodeJobBody, validateJob } from '../../src/mistry/server/job-request.js';
import { InputError, parseDuration, parseParams } from '../../src/mistry/client/params.js';
import {
  encodeHeader,
  readTar,
  TarDestinationClosedError,
  tarStream,
  type TarFiles,
  walkTree,
  writeTar,
  type TarEntryHeader,
} from '../../src/mistry/tar.js';
import { extractTar } from '../../src/mistry/client/extract.js';

t.test('RFC 3339 times trim trailing fraction zeros like Go', async (t) => {
  const cases: [number, string][] = [
    [Date.UTC(2019, 6, 2, 10, 11, 12, 0), '2019-07-02T10:11:12Z'],
    [Date.UTC(2019, 6, 2, 10, 11, 12, 120), '2019-07-02T10:11:12.12Z'],
    [Date.UTC(2019, 6, 2, 10, 11, 12, 7), '2019-07-02T10:11:12.007Z'],
  ];
  for (const [ms, text] of cases) t.equal(formatRfc3339(ms), text);
  t.equal(formatIndexTime('2019-07-02T10:11:12.5Z'), 'Tue, 02 Jul 2019 10:11:12');
  t.equal(formatIndexTime('2006-01-02T15:04:05+02:00'), 'Mon, 02 Jan 2006 15:04:05', 'own offset');
});

t.test('BuildInfo keeps the original field order and omits empty logs', async (t) => {
  const info: BuildInfo = {
    URL: 'job/p/x',
    Duration: 5,
    StartedAt: 'now',
    TransportMethod: 'rsync',
    ContainerStderr: 'err',
    ContainerStdouterr: '',
    ErrBuild: '',
    ExitCode: 0,
    Incremental: false,
    Coalesced: false,
    Cached: false,
    Path: '/p',
    Group: '',
    Params: null,
  };
  t.same(Object.keys(orderedBuildInfo(info)), [
    'Params',
    'Group',
    'Path',
    'Cached',
    'Coalesced',
    'Incremental',
    'ExitCode',
    'ErrBuild',
    'ContainerStderr',
    'TransportMethod',
    'StartedAt',
    'Duration',
    'URL',
  ]);
  t.notOk('ContainerStderr' in orderedBuildInfo(info, false));
});

t.test('job IDs change with every input the spec names, and only those', async (t) => {
  const file: FileFingerprint = {
    path: 'Dockerfile',
    mode: 0o644,
    mtimeS: 100,
    size: 10,
    sha256: 'a'.repeat(64),
  };
  const base = { project: 'p', group: '', params: { foo: 'x' }, files: [file] };
  const id = computeJobId(base);
  t.match(id, /^[0-9a-f]{64}$/);
  t.equal(computeJobId({ ...base, files: [{ ...file }] }), id, 'deterministic');
  const changes: [string, Parameters<typeof computeJobId>[0]][] = [
    ['project', { ...base, project: 'q' }],
    ['group', { ...base, group: 'g' }],
    ['param value', { ...base, params: { foo: 'y' } }],
    ['param added', { ...base, params: { foo: 'x', bar: '' } }],
    ['no params', { ...base, params: null }],
    ['file added', { ...base, files: [file, { ...file, path: 'new', size: 0 }] }],
    ['content', { ...base, files: [{ ...file, sha256: 'b'.repeat(64) }] }],
    ['mode', { ...base, files: [{ ...file, mode: 0o755 }] }],
    ['mtime', { ...base, files: [{ ...file, mtimeS: 101 }] }],
    ['path', { ...base, files: [{ ...file, path: 'Dockerfile2' }] }],
  ];
  for (const [name, input] of changes) t.not(computeJobId(input), id, name);
  t.equal(computeJobId({ ...base, params: { foo: 'x', _opaque: '1' } }), id, '_ params ignored');
  t.equal(computeJobId({ ...base, params: { foo: 'x' } }), id);
  t.not(
    computeJobId({ ...base, params: { a: 'bc' } }),
    computeJobId({ ...base, params: { ab: 'c' } }),
    'length-prefixed: no ambiguity',
  );
});

t.test('POST /jobs bodies decode like Go encoding/json', async (t) => {
  const cases: [string, string, ReturnType<typeof decodeJobBody> | RegExp][] = [
    [
      'original client',
      '{"Project":"simple","Params":{"foo":"zxc"},"Group":"","Rebuild":false}',
      { project: 'simple', params: { foo: 'zxc' }, group: '', rebuild: false },
    ],
    [
      'lower case',
      '{"project":"simple"}',
      { project: 'simple', params: null, group: '', rebuild: false },
    ],
    [
      'exact case wins',
      '{"PROJECT":"b","Project":"a","project":"c"}',
      { project: 'a', params: null, group: '', rebuild: false },
    ],
    [
      'unknown keys ignored',
      '{"Project":"a","Other":1,"Rebuild":true}',
      { project: 'a', params: null, group: '', rebuild: true },
    ],
    ['null body', 'null', { project: '', params: null, group: '', rebuild: false }],
    [
      'number project',
      '{"Project":1}',
      /cannot unmarshal number into Go struct field Job\.Project of type string/,
    ],
    ['number param', '{"Params":{"a":1}}', /cannot unmarshal number/],
    ['array params', '{"Params":["a"]}', /cannot unmarshal array/],
    ['string rebuild', '{"Rebuild":"yes"}', /of type bool/],
    ['array body', '[]', /cannot unmarshal array into Go value of type Job/],
    ['syntax', '{', /JSON/],
  ];
  for (const [name, raw, expected] of cases) {
    if (expected instanceof RegExp) t.throws(() => decodeJobBody(raw), expected, name);
    else t.same(decodeJobBody(raw), expected, name);
  }
});

t.test('names are validated before anything is created', async (t) => {
  const ok: Parameters<typeof validateJob>[0] = {
    project: 'simple',
    group: '',
    params: null,
    rebuild: false,
  };
  const cases: [string, Partial<typeof ok>, string | undefined][] = [
    ['valid', {}, undefined],
    ['empty project', { project: '' }, 'no project given'],
    ['dot dot', { project: '..' }, "Invalid project name '..'"],
    ['hidden', { project: '.trash' }, "Invalid project name '.trash'"],
    ['slash', { project: 'a/b' }, "Invalid project name 'a/b'"],
    ['long', { project: 'a'.repeat(129) }, `Invalid project name '${'a'.repeat(129)}'`],
    ['group', { group: 'x/../y' }, "Invalid group 'x/../y'"],
    ['param', { params: { '../k': 'v' } }, "Invalid param key '../k'"],
    ['at and dash', { project: '@a.b-c_d' }, undefined],
  ];
  for (const [name, change, message] of cases)
    t.equal(validateJob({ ...ok, ...change }), message, name);
});

t.test('client params and durations', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mst-params-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'value.txt'), 'from file');
  t.same(await parseParams(['foo=a=b', '--bar=1', '-baz', 'two', 'f=@value.txt', 'lit=@@x'], dir), {
    foo: 'a=b',
    bar: '1',
    baz: 'two',
    f: 'from file',
    lit: '@x',
  });
  await t.rejects(parseParams(['lonely'], dir), InputError);
  await t.rejects(parseParams(['f=@missing'], dir), InputError);
  const durations: [string, number][] = [
    ['1s', 1000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['250ms', 250],
    ['0', 0],
  ];
  for (const [text, ms] of durations) t.equal(parseDuration(text), ms, text);
  for (const bad of ['', '5', 'abc', '1x', '1s2'])
    t.throws(() => parseDuration(bad), InputError, bad);
});

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface Seen {
  header: TarEntryHeader;
  data: string;
}

async function parseChunks(chunks: Buffer[]): Promise<Seen[]> {
  const seen: Seen[] = [];
  let current: Seen | undefined;
  await readTar(
    (async function* () {
      yield* chunks;
    })(),
    {
      entry: (header) => {
        current = { header, data: '' };
        seen.push(current);
      },
      data: (chunk) => {
        if (current) current.data += chunk.toString('latin1');
      },
      end: () => {
        current = undefined;
      },
    },
  );
  return seen;
}

t.test('tar: written archives parse whole, byte by byte and at every split', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mst-tar-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const longName = `${'d'.repeat(60)}/${'f'.repeat(80)}.txt`;
  await mkdir(join(dir, 'd'.repeat(60)));
  await writeFile(join(dir, longName), 'long');
  await writeFile(join(dir, 'a.txt'), 'x'.repeat(700));
  await writeFile(join(dir, 'empty'), '');
  await symlink('a.txt', join(dir, 'link'));
  await utimes(join(dir, 'a.txt'), 1_000_000, 1_000_000);
  const archive = await collect(tarStream(walkTree(dir)));
  t.equal(archive.length % 512, 0);
  const whole = await parseChunks([archive]);
  t.same(
    whole.map((s) => [s.header.name, s.header.type, s.data.length]),
    [
      ['a.txt', 'file', 700],
      ['d'.repeat(60), 'directory', 0],
      [longName, 'file', 4],
      ['empty', 'file', 0],
      ['link', 'symlink', 0],
    ],
  );
  t.equal(whole[0]?.header.mtimeS, 1_000_000);
  t.equal(whole[4]?.header.linkname, 'a.txt');
  const bytes = Array.from({ length: archive.length }, (_, i) => archive.subarray(i, i + 1));
  t.same(await parseChunks(bytes), whole, 'byte by byte');
  let mismatches = 0;
  for (let split = 1; split < archive.length; split += 1) {
    const parsed = await parseChunks([archive.subarray(0, split), archive.subarray(split)]);
    if (JSON.stringify(parsed) !== JSON.stringify(whole)) mismatches++;
  }
  t.equal(mismatches, 0, 'every split offset');
  await t.rejects(parseChunks([archive.subarray(0, 700)]), /truncated/);
  const corrupt = Buffer.from(archive);
  corrupt[0] = 0x41;
  await t.rejects(parseChunks([corrupt]), /checksum/);
});

t.test('tar: files larger than a chunk and many small ones keep every byte', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mst-tar-big-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // 2.5 MiB spans three 1 MiB chunks; 80 small files exceed the reads allowed in one chunk.
  const contents = new Map<string, Buffer>([['big', randomBytes(2.5 * 1024 * 1024 + 300)]]);
  contents.set('edge', randomBytes(1024 * 1024 - 100));
  for (let i = 0; i < 80; i++)
    contents.set(`small-${String(i).padStart(2, '0')}`, randomBytes(i * 97));
  for (const [name, data] of contents) await writeFile(join(dir, name), data);
  const bodies = async (archive: Buffer): Promise<Map<string, Buffer>> => {
    const out = new Map<string, Buffer>();
    let name = '';
    let parts: Buffer[] = [];
    await readTar(Readable.from([archive]), {
      entry: (header) => {
        [name, parts] = [header.name, []];
      },
      data: (chunk) => void parts.push(Buffer.from(chunk)),
      end: () => void out.set(name, Buffer.concat(parts)),
    });
    return out;
  };
  const streamed = await collect(tarStream(walkTree(dir)));
  t.equal(streamed.length % 512, 0);
  // Digests, not bytes: a mismatch then reports which file, not megabytes of diff.
  const digests = (files: Map<string, Buffer>): Record<string, string> =>
    Object.fromEntries(
      [...files].map(([name, data]) => [name, createHash('sha256').update(data).digest('hex')]),
    );
  t.same(digests(await bodies(streamed)), digests(contents));

  // writeTar honours back-pressure of a slow destination and produces the same archive.
  const chunks: Buffer[] = [];
  const slow = new Writable({
    highWaterMark: 1024,
    write: (chunk: Buffer, _encoding, done) => {
      chunks.push(Buffer.from(chunk));
      setImmediate(done);
    },
  });
  let counted = 0;
  await writeTar(walkTree(dir), slow, (chunk) => (counted += chunk.length));
  t.ok(Buffer.concat(chunks).equals(streamed), 'writeTar writes the tarStream bytes');
  t.equal(counted, streamed.length, 'every chunk is counted');

  const gone = new Writable({
    highWaterMark: 1024,
    write: (_chunk, _encoding, done) => {
      gone.destroy();
      done();
    },
  });
  await t.rejects(writeTar(walkTree(dir), gone), TarDestinationClosedError);
});

t.test('tar: a file spanning chunks keeps its descriptor until every piece is read', async (t) => {
  // A file's pieces land in several chunks whose reads run at once, so its last piece can finish
  // first. Closing then made the slower piece fail with EBADF, or read another file once the
  // descriptor number was reused by the next open. Here the first piece is held back on purpose.
  const dir = await mkdtemp(join(tmpdir(), 'mst-tar-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const big = randomBytes(2.5 * 1024 * 1024);
  await writeFile(join(dir, 'big'), big);
  await writeFile(join(dir, 'small'), 'after');
  const open = promisify(fsOpen);
  const read = promisify(fsRead);
  const reading = new Map<number, number>();
  const closedEarly: number[] = [];
  const files: TarFiles = {
    open: (path) => open(path, 'r'),
    read: async (fd, target, offset, length, position) => {
      reading.set(fd, (reading.get(fd) ?? 0) + 1);
      try {
        if (position === 0 && length > 1024) await new Promise((r) => setTimeout(r, 300));
        return await read(fd, target, offset, length, position);
      } finally {
        reading.set(fd, (reading.get(fd) ?? 1) - 1);
      }
    },
    close: async (fd) => {
      if ((reading.get(fd) ?? 0) > 0) closedEarly.push(fd);
      await promisify(fsClose)(fd);
    },
  };
  const bodies = new Map<string, Buffer[]>();
  let name = '';
  await readTar(tarStream(walkTree(dir), files), {
    entry: (header) => void bodies.set((name = header.name), []),
    data: (chunk) => void bodies.get(name)?.push(Buffer.from(chunk)),
    end: () => undefined,
  });
  t.same(closedEarly, [], 'no descriptor closed while a read on it was running');
  t.ok(Buffer.concat(bodies.get('big') ?? []).equals(big), 'the big file is whole');
  t.equal(Buffer.concat(bodies.get('small') ?? []).toString(), 'after');
});

t.test('extraction refuses escapes and symlink writes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mst-extract-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const archive = (entries: TarEntryHeader[], body = ''): Readable =>
    Readable.from([
      ...entries.flatMap((entry) => [
        encodeHeader(entry),
        ...(entry.size > 0 ? [Buffer.from(body), Buffer.alloc(512 - (body.length % 512))] : []),
      ]),
      Buffer.alloc(1024),
    ]);
  const file = (name: string): TarEntryHeader => ({
    name,
    type: 'file',
    mode: 0o640,
    mtimeS: 5000,
    size: 2,
  });
  const target = join(dir, 'target');
  await mkdir(target);
  t.equal(await extractTar(archive([file('sub/ok.txt')], 'ok'), target), 1);
  t.equal(await readFile(join(target, 'sub', 'ok.txt'), 'utf8'), 'ok');
  t.equal((await lstat(join(target, 'sub', 'ok.txt'))).mode & 0o777, 0o640);
  t.equal((await lstat(join(target, 'sub', 'ok.txt'))).mtimeMs, 5_000_000);
  await t.rejects(extractTar(archive([file('../evil')], 'no'), target), /unsafe/);
  await t.rejects(extractTar(archive([file('/abs')], 'no'), target), /unsafe/);
  await symlink(dir, join(target, 'out'));
  await t.rejects(extractTar(archive([file('out/evil')], 'no'), target), /symlink/);
  await t.rejects(lstat(join(dir, 'evil')));
  t.equal(await readlink(join(target, 'out')), dir);
});
