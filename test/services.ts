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
