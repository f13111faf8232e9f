/**
 * Access to the shared local services (started by `scripts/services.sh up`), with a private
 * namespace per test: a random Redis key prefix, Kafka topic names and Docker labels, each
 * cleaned up in teardown.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Kafka, logLevel, type Admin, type ITopicConfig } from 'kafkajs';
import Docker from 'dockerode';
import type { Test } from 'tap';
import { eventually } from './net.js';

export const REDIS_URL =
  process.env.TEST_REDIS_URL ?? `redis://127.0.0.1:${process.env.REDIS_PORT ?? '6379'}`;
export const KAFKA_BROKERS = (
  process.env.TEST_KAFKA_BROKERS ?? `127.0.0.1:${process.env.KAFKA_PORT ?? '9092'}`
).split(',');
export const DOCKER_SOCKET = process.env.TEST_DOCKER_SOCKET ?? '/var/run/docker.sock';
/** The busybox image built FROM scratch by scripts/services.sh. */
export const TEST_IMAGE = 'skroutz-infra-test/busybox:latest';

/** A short random id for names: keys, topics, groups, labels. */
export function uniqueId(prefix = 't'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** A Redis client plus a key prefix; every key under the prefix is deleted in teardown. */
export function redisForTest(t: Test): { redis: Redis; prefix: string } {
  const prefix = `${uniqueId('test')}:`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2, connectTimeout: 3000 });
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  return { redis, prefix };
}

export function kafkaClient(clientId = uniqueId('test')): Kafka {
  return new Kafka({
    clientId,
    brokers: KAFKA_BROKERS,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 5000,
  });
}

/**
 * Creates `topics` and waits until each has its partitions and every one a leader. kafkajs's own
 * wait (`waitForLeaders`) gives up with UNKNOWN_TOPIC_OR_PARTITION when a loaded broker is slow to
 * publish a new topic, so creation is retried (a topic that exists by then counts) and the
 * leaders are polled here within `timeoutMs`.
 */
export async function createTopicsReady(
  admin: Admin,
  topics: ITopicConfig[],
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await admin.createTopics({ topics, waitForLeaders: false });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  const wanted = new Map(topics.map((x) => [x.topic, x.numPartitions ?? 1]));
  await eventually(
    async () => {
      const { topics: found } = await admin.fetchTopicMetadata({ topics: [...wanted.keys()] });
      return (
        found.length === wanted.size &&
        found.every(
          (m) =>
            m.partitions.length === wanted.get(m.name) && m.partitions.every((p) => p.leader >= 0),
        )
      );
    },
    Math.max(0, deadline - Date.now()),
    100,
  );
  // Metadata names a leader before that broker has created the partition's log; a produce in
  // between fails that partition with NOT_LEADER_OR_FOLLOWER, and kafkajs (not idempotent) then
  // retries the whole request, writing the other partitions' messages twice. ListOffsets reaches
  // the same replica state as a produce, so a topic counts as ready once every partition answers.
  await eventually(
    async () => {
      for (const topic of wanted.keys()) {
        const offsets = await admin.fetchTopicOffsets(topic);
        if (offsets.length !== wanted.get(topic)) return false;
      }
      return true;
    },
    Math.max(0, deadline - Date.now()),
    100,
  );
}

/** Creates fresh topics for one test and deletes them in teardown. */
export async function kafkaTopicsForTest(t: Test, count = 1, partitions = 1): Promise<string[]> {
  const topics = Array.from({ length: count }, () => uniqueId('topic'));
  const admin = kafkaClient().admin();
  await admin.connect();
  await createTopicsReady(
    admin,
    topics.map((topic) => ({ topic, numPartitions: partitions })),
  );
  t.teardown(async () => {
    await admin.deleteTopics({ topics, timeout: 10_000 });
    await admin.disconnect();
  });
  return topics;
}

export function dockerClient(): Docker {
  return new Docker({ socketPath: DOCKER_SOCKET });
}
