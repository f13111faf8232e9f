/**
 * A small ustar/PAX tar writer and reader, enough for build contexts, `artifacts.tar` and the
 * client's extraction: directories, regular files with mode and mtime, symlinks, and PAX records
 * for names or sizes that do not fit the ustar fields.
 */
import { close, open, read } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { promisify } from 'node:util';

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

/** Zero bytes that follow a body of `size` bytes up to the next block. */
function paddingBytes(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function padding(size: number): Buffer {
  return Buffer.alloc(paddingBytes(size));
}

/** One chunk of the archive as the socket gets it; file bytes are read straight into it. */
const CHUNK_BYTES = 1024 * 1024;
/**
 * Reads in flight per chunk, so a chunk of tiny files does not hold hundreds of descriptors: a
 * download has at most this many times `READ_AHEAD_CHUNKS + 1` files open.
 */
const MAX_READS_PER_CHUNK = 16;
/** Full chunks whose reads run ahead of the consumer, so the disk works while the socket drains. */
const READ_AHEAD_CHUNKS = 3;

const openFile = promisify(open);
const readFile = promisify(read);
const closeFile = promisify(close);

/** The file calls an archive makes; a test passes slowed-down ones to check their ordering. */
export interface TarFiles {
  open(path: string): Promise<number>;
  read(
    fd: number,
    target: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  close(fd: number): Promise<void>;
}

const nodeFiles: TarFiles = {
  open: (path) => openFile(path, 'r'),
  read: (fd, target, offset, length, position) => readFile(fd, target, offset, length, position),
  close: closeFile,
};

/**
 * The memory chunks are built in. Buffers given back once written are used again: a download
 * then allocates a handful of chunks instead of its whole size, which the garbage collector
 * would otherwise chase all along.
 */
class ChunkBuffers {
  private readonly spare: ArrayBuffer[] = [];

  take(): Buffer {
    return Buffer.from(this.spare.pop() ?? new ArrayBuffer(CHUNK_BYTES));
  }

  /** Returns the memory behind a chunk the consumer is done with. */
  give(chunk: Buffer): void {
    if (chunk.buffer instanceof ArrayBuffer && chunk.buffer.byteLength === CHUNK_BYTES) {
      this.spare.push(chunk.buffer);
    }
  }
}

/** The file behind one entry's body while its bytes are copied into chunks. */
interface BodySource {
  files: TarFiles;
  fd: Promise<number>;
  size: number;
  /** Bytes of the body already given a place in a chunk. */
  placed: number;
  /** Reads of its pieces so far, in several chunks and running at once. */
  pieces: Promise<void>[];
}

/**
 * Reads `length` bytes at `position` into `target` at `offset`; zeros where the file came up short.
 */
async function readFully(
  files: TarFiles,
  fd: number,
  target: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await files.read(
      fd,
      target,
      offset + done,
      length - done,
      position + done,
    );
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  // A file that shrank while being read is padded so the archive stays well-formed.
  target.fill(0, offset + done, offset + length);
}

/** Closes a body's file once its reads are over; a failed open has nothing to close. */
function closeSource(source: BodySource): Promise<void> {
  return source.fd.then(
    (fd) => source.files.close(fd),
    () => undefined,
  );
}

/**
 * A chunk being filled: headers and padding are copied in at once, file bytes are read into their
 * place, several files at a time, so no per-file buffer is allocated and then concatenated.
 */
class ArchiveChunk {
  private used = 0;
  private readonly reads: Promise<void>[] = [];

  constructor(private readonly buffer: Buffer) {}

  get full(): boolean {
    return this.used === this.buffer.length || this.reads.length >= MAX_READS_PER_CHUNK;
  }

  /** Copies as much of `bytes` as fits; returns how much did. */
  copy(bytes: Buffer): number {
    const length = bytes.copy(this.buffer, this.used);
    this.used += length;
    return length;
  }

  /** Adds up to `count` zero bytes; returns how many fit. */
  zeros(count: number): number {
    const length = Math.min(count, this.buffer.length - this.used);
    this.buffer.fill(0, this.used, this.used + length);
    this.used += length;
    return length;
  }

  /** Starts reading the next piece of `source` that fits; its file is closed after the last. */
  read(source: BodySource): void {
    const length = Math.min(this.buffer.length - this.used, source.size - source.placed);
    const [offset, position] = [this.used, source.placed];
    const piece = source.fd.then((fd) =>
      readFully(source.files, fd, this.buffer, offset, length, position),
    );
    source.placed += length;
    this.used += length;
    source.pieces.push(piece);
    if (source.placed < source.size) {
      this.reads.push(piece);
      return;
    }
    // The last piece may finish before earlier ones in other chunks: the descriptor is closed once
    // every piece is over, or a late read would hit a closed, or reused, descriptor.
    const closed = Promise.allSettled(source.pieces).then(() => closeSource(source));
    this.reads.push(piece.finally(() => closed));
  }

  /** The filled bytes, once every read into them is over. */
  async bytes(): Promise<Buffer> {
    // Every read ends before a failure is reported: none may still write into a dropped chunk.
    const failed = (await Promise.allSettled(this.reads)).find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return this.buffer.subarray(0, this.used);
  }

  /** Waits out the reads without failing, for a chunk that will never be sent. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.reads);
  }
}

/** One entry to archive: its header and, for files, the absolute path its bytes come from. */
export interface TarSource extends TarEntryHeader {
  sourcePath?: string;
}

type TarEntries = AsyncIterable<TarSource> | Iterable<TarSource>;

/** The archive of `entries` as chunks of up to 1 MiB, each handed out once its reads are over. */
async function* archiveChunks(
  entries: TarEntries,
  buffers: ChunkBuffers,
  files: TarFiles,
): AsyncGenerator<Buffer> {
  let chunk = new ArchiveChunk(buffers.take());
  // Full chunks wait here with their reads running until the consumer asks for them.
  const filled: ArchiveChunk[] = [chunk];
  let source: BodySource | undefined;
  const startNext = async function* (): AsyncGenerator<Buffer> {
    chunk = new ArchiveChunk(buffers.take());
    filled.push(chunk);
    if (filled.length > READ_AHEAD_CHUNKS + 1) yield await (filled.shift() as ArchiveChunk).bytes();
  };
  const putAll = async function* (bytes: Buffer): AsyncGenerator<Buffer> {
    for (let rest = bytes; rest.length > 0; rest = rest.subarray(chunk.copy(rest))) {
      if (chunk.full) yield* startNext();
    }
  };
  try {
    for await (const entry of entries) {
      yield* putAll(encodeHeader(entry));
      if (entry.type !== 'file' || entry.size === 0 || entry.sourcePath === undefined) continue;
      const fd = files.open(entry.sourcePath);
      source = { files, fd, size: entry.size, placed: 0, pieces: [] };
      while (source.placed < source.size) {
        if (chunk.full) yield* startNext();
        chunk.read(source);
      }
      source = undefined;
      for (let pad = paddingBytes(entry.size); pad > 0; pad -= chunk.zeros(pad)) {
        if (chunk.full) yield* startNext();
      }
    }
    yield* putAll(Buffer.alloc(2 * BLOCK));
    while (filled.length > 0) yield await (filled.shift() as ArchiveChunk).bytes();
  } finally {
    // On an error or an abandoned archive: no read left running, no descriptor left open.
    await Promise.all(filled.map((pending) => pending.settle()));
    if (source) await closeSource(source);
  }
}

/** Streams `entries` as a tar archive, reading files a few chunks ahead of the consumer. */
export function tarStream(entries: TarEntries, files: TarFiles = nodeFiles): Readable {
  return Readable.from(archiveChunks(entries, new ChunkBuffers(), files), { objectMode: false });
}

export class TarDestinationClosedError extends Error {
  override readonly name = 'TarDestinationClosedError';
}

/** Resolves once `stream` drains; rejects if it closes or fails first. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (err?: Error): void => {
      stream.off('drain', settle).off('close', onClose).off('error', settle);
      if (err) reject(err);
      else resolve();
    };
    const onClose = (): void => settle(new TarDestinationClosedError('the destination closed'));
    if (stream.destroyed) return onClose();
    stream.on('drain', settle).on('close', onClose).on('error', settle);
  });
}

/**
 * Writes the archive of `entries` to `destination` and ends it, honouring back-pressure and
 * reusing each chunk's memory once the destination has written it. `onChunk` sees every chunk
 * (for byte counters). Rejects with `TarDestinationClosedError` if the destination goes away.
 */
export async function writeTar(
  entries: TarEntries,
  destination: Writable,
  onChunk: (chunk: Buffer) => void = () => undefined,
  files: TarFiles = nodeFiles,
): Promise<void> {
  const buffers = new ChunkBuffers();
  for await (const chunk of archiveChunks(entries, buffers, files)) {
    onChunk(chunk);
    const more = destination.write(chunk, (err) => {
      if (!err) buffers.give(chunk);
    });
    if (!more) await drained(destination);
  }
  destination.end();
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
