/**
 * Partition choice, made by rafka rather than by the Kafka library so that keys keep the
 * partitions librdkafka gave them (§3.8): `consistent_random` is CRC-32 of the key modulo the
 * partition count, random for a null or empty key.
 */
import type { PartitionerName } from './kafka-config.js';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE, as zlib computes it), unsigned. */
export function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Kafka's Java murmur2 (seed 0x9747b28c), as a signed 32-bit value. */
export function murmur2(bytes: Buffer): number {
  const m = 0x5bd1e995;
  const length = bytes.length;
  let h = (0x9747b28c ^ length) | 0;
  const blocks = length >>> 2;
  for (let i = 0; i < blocks; i++) {
    let k = bytes.readInt32LE(i * 4);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = blocks * 4;
  const rest = length & 3;
  if (rest === 3) h ^= bytes[tail + 2] << 16;
  if (rest >= 2) h ^= bytes[tail + 1] << 8;
  if (rest >= 1) {
    h ^= bytes[tail];
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

export type Partitioner = (key: Buffer | null, partitionCount: number) => number;

const randomPartition = (count: number): number => Math.floor(Math.random() * count);

export function partitionerFor(name: PartitionerName): Partitioner {
  switch (name) {
    case 'consistent_random':
      return (key, count) =>
        key === null || key.length === 0 ? randomPartition(count) : crc32(key) % count;
    case 'consistent':
      return (key, count) => (key === null || key.length === 0 ? 0 : crc32(key) % count);
    case 'random':
      return (_key, count) => randomPartition(count);
    case 'murmur2_random':
      return (key, count) =>
        key === null || key.length === 0
          ? randomPartition(count)
          : (murmur2(key) & 0x7fffffff) % count;
  }
}
