// Smoke tests proving the local services the suites depend on are real and usable.
import t from 'tap';
import {
  kafkaClient,
  kafkaTopicsForTest,
  redisForTest,
  dockerClient,
  TEST_IMAGE,
  uniqueId,
} from './helpers/services.js';
import { clusterId } from './helpers/private-kafka.js';

t.test('Redis answers and keeps keys under a private prefix', async (t) => {
  const { redis, prefix } = redisForTest(t);
  t.equal(await redis.ping(), 'PONG');
  await redis.set(`${prefix}k`, 'v');
  t.equal(await redis.get(`${prefix}k`), 'v');
});

t.test('Kafka accepts a message and hands it back to a consumer', async (t) => {
  const [topic] = await kafkaTopicsForTest(t);
  const kafka = kafkaClient();
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.send({ topic: topic, messages: [{ key: 'k', value: 'hello' }] });

  const consumer = kafka.consumer({ groupId: uniqueId('group') });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic: topic, fromBeginning: true });
  const received = await new Promise<string>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => resolve(message.value?.toString() ?? ''),
    });
  });
  t.equal(received, 'hello');
});

t.test('Docker runs the busybox test image', async (t) => {
  const docker = dockerClient();
  const name = uniqueId('smoke');
  const container = await docker.createContainer({
    Image: TEST_IMAGE,
    name,
    Cmd: ['sh', '-c', 'echo smoke-ok'],
    HostConfig: { NetworkMode: 'none' },
    Labels: { 'skroutz-infra.test': name },
  });
  t.teardown(() => container.remove({ force: true }));
  await container.start();
  const { StatusCode } = (await container.wait()) as { StatusCode: number };
  t.equal(StatusCode, 0);
  const logs = await container.logs({ stdout: true, stderr: true });
  t.match(logs.toString('utf8'), /smoke-ok/);
});

t.test('cluster ids for a private broker are 16 bytes and never start with a dash', async (t) => {
  // One random id in 64 used to start with '-', which the storage tool took for an option.
  const ids = Array.from({ length: 5000 }, clusterId);
  t.equal(ids.filter((id) => id.startsWith('-')).length, 0);
  t.ok(ids.every((id) => Buffer.from(id, 'base64url').length === 16 && id.length === 22));
  t.equal(new Set(ids).size, ids.length);
});
