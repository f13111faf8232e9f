// E7 and S5: 300 jobs over 5 aggregations from 60 concurrent clients; every job is accounted
// for, and the metrics of all three components move.
import t from 'tap';
import {
  FILES,
  setupDownloader,
  startOrigin,
  startReceiver,
  submit,
} from '../helpers/downloader.js';
import { request } from '../helpers/net.js';

function metricValue(text: string, pattern: RegExp): number {
  const line = text.split('\n').find((l) => pattern.test(l));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

t.test('E7: 300 jobs, thirds success / mime mismatch / 404', async (t) => {
  const dl = setupDownloader(t);
  const origin = await startOrigin(t);
  const receiver = await startReceiver(t);
  origin.route('/ok.png', (_req, res) =>
    res.writeHead(200, { 'Content-Type': 'image/png' }).end(FILES.png),
  );
  const { url: api } = await dl.startApi();
  const processor = await dl.start('processor');
  const notifier = await dl.start('notifier');

  const kinds = ['ok', 'mime', 'missing'] as const;
  const jobs = Array.from({ length: 300 }, (_v, i) => {
    const kind = kinds[i % 3];
    return {
      kind,
      body: {
        url: `${origin.url}/${kind === 'missing' ? 'missing.png' : 'ok.png'}?n=${i}`,
        aggr_id: `shop-${i % 5}`,
        aggr_limit: 10,
        callback_url: receiver.url,
        mime_type: kind === 'mime' ? 'image/jpeg' : 'image/png',
      },
    };
  });
  const ids = new Map<string, string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 60 }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        if (!job) break;
        ids.set(await submit(api, job.body), job.kind);
      }
    }),
  );
  t.equal(ids.size, 300, '300 distinct ids');
  const callbacks = await receiver.waitFor(300, 90_000);
  const byId = new Map(callbacks.map((c) => [c.body.job_id as string, c.body]));
  t.equal(byId.size, 300, 'one callback per job');
  let ok = 0;
  let mime = 0;
  let missing = 0;
  for (const [id, kind] of ids) {
    const body = byId.get(id);
    if (kind === 'ok' && body?.success === true) ok++;
    if (kind === 'mime' && body?.success === false && /Expected mime-type/.test(String(body.error)))
      mime++;
    if (kind === 'missing' && body?.success === false && /404 Not Found/.test(String(body.error)))
      missing++;
  }
  t.same({ ok, mime, missing }, { ok: 100, mime: 100, missing: 100 });
  const times = callbacks.map((c) => c.at).sort((a, b) => a - b);
  const gap = Math.max(...times.slice(1).map((at, i) => at - times[i]));
  t.ok(gap < 10_000, `no gap over 10 s between callbacks (max ${gap} ms)`);

  t.test('S5: metrics are present and moved', async (t) => {
    const apiMetrics = (await request(`${api}/metrics`)).text;
    t.equal(metricValue(apiMetrics, /^downloader_api_jobs_enqueued_total/), 300);
    const procAddr = /"metrics":"([^"]+)"/.exec(processor.output())?.[1];
    const notifAddr = /"metrics":"([^"]+)"/.exec(notifier.output())?.[1];
    const procMetrics = (await request(`http://${procAddr}/metrics`)).text;
    const notifMetrics = (await request(`http://${notifAddr}/metrics`)).text;
    for (const name of [
      'downloader_processor_attempts_total',
      'downloader_processor_responses_total',
      'downloader_processor_errors_total',
      'downloader_processor_attempt_duration_seconds_bucket',
      'downloader_processor_downloaded_bytes_total',
      'downloader_processor_downloads_in_flight',
      'downloader_processor_lanes',
      'downloader_processor_disk_usage_ratio',
      'downloader_processor_disk_paused',
      'downloader_build_info',
    ]) {
      t.match(procMetrics, name, name);
    }
    t.equal(
      metricValue(procMetrics, /^downloader_processor_attempts_total\{outcome="success"/),
      100,
    );
    t.equal(
      metricValue(procMetrics, /^downloader_processor_attempts_total\{outcome="failed"/),
      200,
    );
    t.equal(metricValue(procMetrics, /^downloader_processor_responses_total\{code="404"/), 100);
    t.equal(metricValue(procMetrics, /^downloader_processor_errors_total\{kind="mime"/), 100);
    t.equal(
      metricValue(
        notifMetrics,
        /^downloader_notifier_callbacks_total\{backend="http",outcome="delivered"/,
      ),
      300,
    );
    t.match(notifMetrics, 'downloader_notifier_delivery_latency_seconds_bucket');
    t.match(notifMetrics, 'downloader_notifier_send_duration_seconds_bucket');
    t.match(notifMetrics, 'downloader_notifier_callbacks_in_flight');
  });
});
