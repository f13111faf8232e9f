import t from 'tap';
import { Counter } from 'prom-client';
import { startAdminServer } from '../../src/common/admin-server.js';
import { silentLogger } from '../../src/common/logger.js';
import { createRegistry } from '../../src/common/metrics.js';
import { request } from '../helpers/net.js';

t.test('serves its own registry on /metrics and health on /healthz', async (t) => {
  const registry = createRegistry({ component: 'demo' });
  const other = createRegistry({ component: 'other' });
  new Counter({ name: 'demo_events_total', help: 'events', registers: [registry] }).inc(3);
  new Counter({ name: 'other_events_total', help: 'events', registers: [other] }).inc();
  let healthy = true;
  const admin = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    registry,
    logger: silentLogger(),
    health: () => ({ healthy, details: { redis: healthy ? 'up' : 'down' } }),
  });
  t.teardown(() => admin.close());
  const base = `http://127.0.0.1:${admin.address.port}`;

  const metrics = await request(`${base}/metrics`);
  t.equal(metrics.status, 200);
  t.match(metrics.text, /demo_events_total\{component="demo"\} 3/);
  t.match(metrics.text, /nodejs_heap_size_used_bytes/);
  t.match(metrics.text, /nodejs_eventloop_lag_seconds/);
  t.match(metrics.text, /nodejs_active_handles/);
  t.notMatch(metrics.text, /other_events_total/, 'another registry stays out');

  t.same(JSON.parse((await request(`${base}/healthz`)).text), { status: 'ok', redis: 'up' });
  healthy = false;
  const sick = await request(`${base}/healthz`);
  t.equal(sick.status, 503);
  t.same(JSON.parse(sick.text), { status: 'unhealthy', redis: 'down' });
  t.equal((await request(`${base}/nope`)).status, 404);
  t.equal((await request(`${base}/metrics`, { method: 'POST' })).status, 405);
});

t.test('close is safe to call twice and frees the port', async (t) => {
  const admin = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    registry: createRegistry({ component: 'x', processMetrics: false }),
    logger: silentLogger(),
    health: () => ({ healthy: true }),
  });
  await admin.close();
  await admin.close();
  await t.rejects(request(`http://127.0.0.1:${admin.address.port}/healthz`, {}, 2000));
});
