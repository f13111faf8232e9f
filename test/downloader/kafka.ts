// E9: Kafka callbacks land on the job's topic with the same payload; an unknown topic is
// retried, ends Failed and is counted.
import t from 'tap';
import { setupDownloader, startOrigin, submit } from '../helpers/downloader.js';
import { KAFKA_BROKERS, kafkaClient, kafkaTopicsForTest, uniqueId } from '../helpers/services.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('E9: Kafka callbacks', async (t) => {
  const [topic] = await kafkaTopicsForTest(t);
  const dl = setupDownloader(t, {
    backends: {
      kafka: {
        'bootstrap.servers': KAFKA_BROKERS.join(','),
        'message.send.max.retries': 1,
        'queue.buffering.max.ms': 5,
      },
    },
  });
  const origin = await startOrigin(t);
  origin.route('/f', (_req, res) => res.writeHead(200).end('kafka file'));
  const consumer = kafkaClient().consumer({ groupId: uniqueId('group') });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic: topic, fromBeginning: true });
  const messages: Record<string, unknown>[] = [];
  await consumer.run({
    eachMessage: async ({ message }) => {
      messages.push(JSON.parse(message.value?.toString() ?? '{}') as Record<string, unknown>);
    },
  });
  const { url: api } = await dl.startApi();
  await dl.start('processor');
  const notifier = await dl.start('notifier');
  t.match(
    notifier.output(),
    /kafka_keys_ignored.*queue\.buffering\.max\.ms/,
    'unmapped keys warned about once',
  );

  const id = await submit(api, {
    url: `${origin.url}/f`,
    aggr_id: 'k',
    aggr_limit: 2,
    callback_type: 'kafka',
    callback_dst: topic,
  });
  const deadline = Date.now() + 30_000;
  while (!messages.some((m) => m.job_id === id) && Date.now() < deadline) await sleep(100);
  const payload = messages.find((m) => m.job_id === id);
  t.ok(payload, 'the payload arrived on the topic');
  t.equal(payload?.success, true);
  t.equal(payload?.download_url, `${dl.downloadUrl}/${id.slice(0, 3)}/${id}`);

  const lost = await submit(api, {
    url: `${origin.url}/f`,
    aggr_id: 'k',
    aggr_limit: 2,
    callback_type: 'kafka',
    callback_dst: uniqueId('no-such-topic'),
  });
  const key = `${dl.prefix}job:${lost}`;
  const until = Date.now() + 60_000;
  while ((await dl.redis.hget(key, 'cb_state')) !== 'Failed' && Date.now() < until)
    await sleep(200);
  t.equal(await dl.redis.hget(key, 'cb_state'), 'Failed', 'an unknown topic ends Failed');
  await sleep(800);
  const stats = (await (await fetch(`${api}/stats/notifier`)).json()) as Record<string, number>;
  t.equal(stats.unknownTopicOrPartition, 2, 'both attempts counted');
  t.equal(stats.failedCallbacks, 1);
});
