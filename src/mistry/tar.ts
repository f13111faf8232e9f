/**
 * A small ustar/PAX tar writer and reader, enough for build contexts, `artifacts.tar` and the
 * client's extraction: directories, regular files with mode and mtime, symlinks, and PAX records
 * for names or sizes that do not fit the ustar fields.
 */
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export type TarEntryType = 'file' | 'directory' | 'symlink';

export interface TarEntryHeader {
  /** Relative path inside the archive, `/`-separated, without a trailing slash. */
  name: string;
  type: TarEntryType;
  mode: number;
  /** Modification time in whole seconds. */
  mtimeS: number;
  size: number;
  linkname?: string;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function fits(text: string, bytes: number): boolean {
  return Buffer.byteLength(text) <= bytes;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body);
  // The length prefix counts its own digits.
  while (String(length + String(length).length).length !== String(length).length) length++;
  length += String(length).length;
  return `${length}${body}`;
}

function typeFlag(type: TarEntryType): string {
  if (type === 'directory') return '5';
  if (type === 'symlink') return '2';
  return '0';
}

function rawHeader(entry: TarEntryHeader, flag: string, name: string, linkname: string): Buffer {
  const header = Buffer.alloc(BLOCK);
  header.write(name, 0, 100, 'utf8');
  header.write(octal(entry.mode & 0o7777, 8), 100, 'ascii');
  header.write(octal(0, 8), 108, 'ascii');
  header.write(octal(0, 8), 116, 'ascii');
  header.write(octal(entry.size, 12), 124, 'ascii');
  header.write(octal(Math.max(0, Math.floor(entry.mtimeS)), 12), 136, 'ascii');
  header.write('        ', 148, 'ascii');
  header.write(flag, 156, 'ascii');
  header.write(linkname, 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 'ascii');
  header.write('root', 265, 'ascii');
  header.write('root', 297, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

const MAX_USTAR_SIZE = 0o77777777777;

/** The header block(s) of one entry: a PAX extended header first when a field does not fit. */
export function encodeHeader(entry: TarEntryHeader): Buffer {
  const name = entry.type === 'directory' ? `${entry.name}/` : entry.name;
  const linkname = entry.linkname ?? '';
  const pax: string[] = [];
  if (!fits(name, 100)) pax.push(paxRecord('path', name));
  if (!fits(linkname, 100)) pax.push(paxRecord('linkpath', linkname));
  if (entry.size > MAX_USTAR_SIZE) pax.push(paxRecord('size', String(entry.size)));
  const main = rawHeader(
    { ...entry, size: entry.size > MAX_USTAR_SIZE ? 0 : entry.size },
    typeFlag(entry.type),
    fits(name, 100) ? name : name.slice(0, 99),
    fits(linkname, 100) ? linkname : '',
  );
  if (pax.length === 0) return main;
  const body = Buffer.from(pax.join(''), 'utf8');
  const paxHeader = rawHeader(
    { name: 'PaxHeader', type: 'file', mode: 0o644, mtimeS: entry.mtimeS, size: body.length },
    'x',
    'PaxHeader',
    '',
  );
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest);
}

const SMALL_FILE_BYTES = 1024 * 1024;
const BATCH_BYTES = 256 * 1024;

/** Reads `size` bytes of a file into a block-padded buffer (zeros where the file came up short). */
async function readPadded(path: string, size: number): Promise<Buffer> {
  const body = Buffer.alloc(size + ((BLOCK - (size % BLOCK)) % BLOCK));
  const handle = await open(path, 'r');
  try {
    let position = 0;
    while (position < size) {
      const { bytesRead } = await handle.read(body, position, size - position, position);
      if (bytesRead === 0) break;
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return body;
}

const READ_AHEAD_ENTRIES = 16;

function smallBody(entry: TarSource): Promise<Buffer> | undefined {
  if (entry.type !== 'file' || entry.size === 0 || entry.sourcePath === undefined) return undefined;
  if (entry.size > SMALL_FILE_BYTES) return undefined;
  const body = readPadded(entry.sourcePath, entry.size);
  body.catch(() => undefined); // awaited in order later; no unhandled rejection meanwhile
  return body;
}

/**
 * Pulls entries ahead of the writer and starts reading small files at once, so the reads of the
 * next few files overlap instead of costing one thread-pool round trip after another.
 */
async function* readAhead(
  entries: AsyncIterable<TarSource> | Iterable<TarSource>,
): AsyncGenerator<{ entry: TarSource; body: Promise<Buffer> | undefined }> {
  const window: { entry: TarSource; body: Promise<Buffer> | undefined }[] = [];
  for await (const entry of entries) {
    window.push({ entry, body: smallBody(entry) });
    if (window.length >= READ_AHEAD_ENTRIES) yield window.shift() as (typeof window)[number];
  }
  yield* window;
}

/** One entry to archive: its header and, for files, the absolute path its bytes come from. */
export interface TarSource extends TarEntryHeader {
  sourcePath?: string;
}

/** Streams `entries` as a tar archive; each file is read when its turn comes. */
export function tarStream(entries: AsyncIterable<TarSource> | Iterable<TarSource>): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    // Headers and small files are batched into larger chunks; big files stream in 1 MiB reads.
    let batch: Buffer[] = [];
    let batched = 0;
    const take = (): Buffer => {
      const out = Buffer.concat(batch, batched);
      batch = [];
      batched = 0;
      return out;
    };
    for await (const { entry, body: prefetched } of readAhead(entries)) {
      batch.push(encodeHeader(entry));
      batched += batch[batch.length - 1]?.length ?? 0;
      const hasBody = entry.type === 'file' && entry.size > 0 && entry.sourcePath !== undefined;
      if (hasBody && entry.size <= SMALL_FILE_BYTES) {
        const body = await (prefetched as Promise<Buffer>);
        batch.push(body);
        batched += body.length;
      } else if (hasBody) {
        if (batched > 0) yield take();
        let sent = 0;
        const stream = createReadStream(entry.sourcePath as string, {
          end: entry.size - 1,
          highWaterMark: 1024 * 1024,
        });
        for await (const chunk of stream) {
          const buffer = chunk as Buffer;
          sent += buffer.length;
          yield buffer;
        }
        // A file that shrank while being read is padded so the archive stays well-formed.
        if (sent < entry.size) yield Buffer.alloc(entry.size - sent);
        yield padding(entry.size);
      }
      if (batched >= BATCH_BYTES) yield take();
    }
    batch.push(ZERO_BLOCK, ZERO_BLOCK);
    batched += 2 * BLOCK;
    yield take();
  }
  return Readable.from(generate(), { objectMode: false });
}

/** Every directory, regular file and symlink under `root`, in sorted path order. */
export async function* walkTree(root: string, prefix = ''): AsyncGenerator<TarSource> {
  const names = (await readdir(join(root, prefix))).sort();
  // Stat a directory's entries a few at a time; one after another costs a pool trip each.
  const stats = await mapLimited(names, 16, (name) => lstat(join(root, prefix, name)));
  for (const [index, name] of names.entries()) {
    const relative = prefix === '' ? name : `${prefix}/${name}`;
    const absolute = join(root, relative);
    const info = stats[index];
    const base = { name: relative, mode: info.mode, mtimeS: Math.floor(info.mtimeMs / 1000) };
    if (info.isDirectory()) {
      yield { ...base, type: 'directory', size: 0 };
      yield* walkTree(root, relative);
    } else if (info.isSymbolicLink()) {
      yield { ...base, type: 'symlink', size: 0, linkname: await readlink(absolute) };
    } else if (info.isFile()) {
      yield { ...base, type: 'file', size: info.size, sourcePath: absolute };
    }
  }
}

async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      out[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function readString(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

function readOctal(block: Buffer, offset: number, length: number): number {
  const text = readString(block, offset, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space === -1) break;
    const length = Number(body.subarray(pos, space).toString('ascii'));
    if (!Number.isInteger(length) || length <= 0) throw new TarFormatError('bad PAX record');
    const record = body.subarray(space + 1, pos + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += length;
  }
  return out;
}

export class TarFormatError extends Error {
  override readonly name = 'TarFormatError';
}

/** Handlers of the reader: one call per entry, file bodies as chunks. */
export interface TarVisitor {
  entry(header: TarEntryHeader): Promise<void> | void;
  data(chunk: Buffer): Promise<void> | void;
  end(): Promise<void> | void;
}

/**
 * Parses a tar stream chunk by chunk, calling the visitor in order: `entry`, the file's `data`
 * chunks, `end`. Works on any chunking of the input.
 */
export async function readTar(input: AsyncIterable<Buffer>, visitor: TarVisitor): Promise<void> {
  let pending: Buffer = Buffer.alloc(0);
  let remaining = 0;
  let pad = 0;
  let inEntry = false;
  let pax: Record<string, string> | undefined;
  let paxBody: Buffer[] | undefined;
  let discard = false;
  let finished = false;
  for await (const chunk of input) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (!finished) {
      if (remaining > 0) {
        if (pending.length === 0) break;
        const take = pending.subarray(0, Math.min(remaining, pending.length));
        pending = pending.subarray(take.length);
        remaining -= take.length;
        if (discard) continue;
        if (paxBody) paxBody.push(take);
        else await visitor.data(take);
        continue;
      }
      if (pad > 0) {
        const skip = Math.min(pad, pending.length);
        pending = pending.subarray(skip);
        pad -= skip;
        if (pad > 0) break;
      }
      discard = false;
      if (paxBody) {
        pax = parsePax(Buffer.concat(paxBody));
        paxBody = undefined;
      }
      if (inEntry) {
        await visitor.end();
        inEntry = false;
      }
      if (pending.length < BLOCK) break;
      const block = pending.subarray(0, BLOCK);
      pending = pending.subarray(BLOCK);
      if (block.equals(ZERO_BLOCK)) {
        finished = true;
        break;
      }
      const header = decodeHeader(block, pax);
      if (header === 'pax') {
        const size = readOctal(block, 124, 12);
        paxBody = [];
        remaining = size;
        pad = (BLOCK - (size % BLOCK)) % BLOCK;
        continue;
      }
      pax = undefined;
      if (header === 'skip') {
        const size = readOctal(block, 124, 12);
        // Unknown entry kinds (hard links, devices, global headers) are skipped whole.
        discard = true;
        remaining = size;
        pad = (BLOCK - (size % BLOCK)) % BLOCK;
        continue;
      }
      await visitor.entry(header);
      inEntry = true;
      remaining = header.type === 'file' ? header.size : 0;
      pad = header.type === 'file' ? (BLOCK - (header.size % BLOCK)) % BLOCK : 0;
    }
    if (finished) break;
  }
  if (inEntry) await visitor.end();
  if (!finished && (remaining > 0 || pending.length > 0)) {
    throw new TarFormatError('truncated tar archive');
  }
}

function decodeHeader(
  block: Buffer,
  pax: Record<string, string> | undefined,
): TarEntryHeader | 'pax' | 'skip' {
  const stored = readOctal(block, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  if (stored !== sum) throw new TarFormatError('bad tar header checksum');
  const flag = String.fromCharCode(block[156] ?? 0);
  if (flag === 'x') return 'pax';
  if (flag === 'g') return 'skip';
  const prefix = readString(block, 345, 155);
  let name = readString(block, 0, 100);
  if (prefix !== '') name = `${prefix}/${name}`;
  name = pax?.path ?? name;
  const type: TarEntryType | undefined =
    flag === '5'
      ? 'directory'
      : flag === '2'
        ? 'symlink'
        : flag === '0' || flag === '\0'
          ? 'file'
          : undefined;
  if (type === undefined) return 'skip';
  const size = pax?.size !== undefined ? Number(pax.size) : readOctal(block, 124, 12);
  return {
    name: name.replace(/\/+$/, ''),
    type,
    mode: readOctal(block, 100, 8),
    mtimeS: readOctal(block, 136, 12),
    size: type === 'file' ? size : 0,
    linkname: pax?.linkpath ?? readString(block, 157, 100),
  };
}
