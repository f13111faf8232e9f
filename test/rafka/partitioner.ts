// Partition choice: librdkafka's consistent_random vectors and the other partitioners.
import t from 'tap';
import { crc32, murmur2, partitionerFor } from '../../src/rafka/partitioner.js';

t.test('CRC-32 vectors of the spec and their partitions on 4', async (t) => {
  const vectors: [string, number, number][] = [
    ['foo', 0x8c736521, 1],
    ['user:42', 0x646f0d86, 2],
    ['a', 0xe8b7be43, 3],
  ];
  const pick = partitionerFor('consistent_random');
  for (const [key, crc, partition] of vectors) {
    t.equal(crc32(Buffer.from(key)), crc, `crc32(${key})`);
    t.equal(pick(Buffer.from(key), 4), partition, `partition of ${key}`);
  }
});

t.test('null and empty keys spread randomly under consistent_random', async (t) => {
  const pick = partitionerFor('consistent_random');
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(pick(i % 2 ? null : Buffer.alloc(0), 4));
  t.equal(seen.size, 4);
});

t.test('consistent sends null and empty keys to 0', async (t) => {
  const pick = partitionerFor('consistent');
  t.equal(pick(null, 4), 0);
  t.equal(pick(Buffer.alloc(0), 4), 0);
  t.equal(pick(Buffer.from('foo'), 4), 1);
});

t.test('murmur2 matches the Java client', async (t) => {
  // Values from Kafka's own Utils.murmur2 tests and DefaultPartitioner behaviour.
  t.equal(murmur2(Buffer.from('21')), -973932308);
  t.equal(murmur2(Buffer.from('foobar')), -790332482);
  t.equal(murmur2(Buffer.from('a-little-bit-long-string')), -985981536);
  const pick = partitionerFor('murmur2_random');
  t.equal(pick(Buffer.from('foobar'), 4), (-790332482 & 0x7fffffff) % 4);
});
