// The dispatcher state machine (spec §3.9) against a scripted fake sink: pure logic plus a temp
// spool.
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/common/logger.js';
import { DeadLetter } from '../../src/scratchd/dead-letter.js';
import { backoffMs, Dispatcher, type SinkState } from '../../src/scratchd/dispatcher.js';
import { createMetrics } from '../../src/scratchd/metrics.js';
import {
  NO_FATAL,
  SinkWriteError,
  type Sink,
  type SinkEvent,
  type WriteResult,
} from '../../src/scratchd/sinks/types.js';
import { Spool } from '../../src/scratchd/spool.js';
import { eventually } from '../helpers/net.js';
import { tempDir } from './helpers/harness.js';

class ScriptedSink implements Sink {
  readonly name = 'fake';
  readonly type = 'fake';
  down = false;
  tooLarge = new Set<string>();
  readonly delivered: string[] = [];
  writes = 0;

  write(batch: readonly SinkEvent[]): Promise<WriteResult> {
    this.writes += 1;
    if (this.down) return Promise.reject(new SinkWriteError('down'));
    const fatal: WriteResult['fatal'] = [];
    batch.forEach((e, index) => {
      if (this.tooLarge.has(e.meta.id)) fatal.push({ index, reason: 'too large' });
      else this.delivered.push(e.meta.id);
    });
    return Promise.resolve(fatal.length > 0 ? { fatal } : NO_FATAL);
  }

  probe(): Promise<void> {
    return this.down ? Promise.reject(new Error('down')) : Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function event(id: string): SinkEvent {
  const data = Buffer.from(
    JSON.stringify({
      v: 1,
      id,
      tenant: 'gr',
      received_at: Date.now(),
      visitor_id: null,
      session_id: null,
    }),
  );
  return {
    data,
    meta: { id, tenant: 'gr', receivedAt: Date.now(), visitorId: null, sessionId: null },
  };
}

function setup(t: Test) {
  const dir = tempDir(t);
  const sink = new ScriptedSink();
  const spool = new Spool({
    dir: `${dir}/spool`,
    maxBytes: 1 << 20,
    segmentBytes: 1 << 16,
    fsyncMs: 5,
  });
  spool.recover();
  const options = {
    batch_events: 10,
    batch_bytes: 1 << 20,
    linger_ms: 5,
    unhealthy_after: 2,
    backoff_base_ms: 5,
    backoff_max_ms: 20,
  };
  const dispatcher = new Dispatcher(
    sink,
    spool,
    options,
    () => 1 << 20,
    new DeadLetter(`${dir}/dead`),
    createMetrics(),
    silentLogger(),
  );
  const states: SinkState[] = [];
  const track = setInterval(() => {
    if (states.at(-1) !== dispatcher.state) states.push(dispatcher.state);
  }, 1);
  t.teardown(async () => {
    clearInterval(track);
    await dispatcher.drain(100);
  });
  dispatcher.start();
  return { sink, spool, dispatcher, states, dir };
}

t.test('healthy → unhealthy → replaying → healthy, every event once, in order', async (t) => {
  const { sink, spool, dispatcher, states } = setup(t);
  const ids = Array.from({ length: 40 }, (_, i) => `e${i}`);
  for (const id of ids.slice(0, 10)) dispatcher.push(event(id));
  await eventually(() => sink.delivered.length === 10, 5000, 5);
  sink.down = true;
  for (const id of ids.slice(10, 25)) dispatcher.push(event(id));
  await eventually(() => dispatcher.state === 'unhealthy', 5000, 5);
  for (const id of ids.slice(25)) dispatcher.push(event(id));
  t.ok(spool.hasData, 'events go to the spool while unhealthy');
  sink.down = false;
  await eventually(() => dispatcher.state === 'healthy' && sink.delivered.length === 40, 5000, 5);
  t.same(sink.delivered, ids, 'order kept through the spool');
  t.notOk(spool.hasData);
  t.same(
    states.filter((s, i) => states.indexOf(s) === i),
    ['healthy', 'unhealthy', 'replaying'].filter((s) => states.includes(s as SinkState)),
  );
  t.ok(states.includes('unhealthy'));
});

t.test('a fatal event is dead-lettered, the rest delivered', async (t) => {
  const { sink, dispatcher, dir } = setup(t);
  sink.tooLarge.add('big');
  for (const id of ['a', 'big', 'b']) dispatcher.push(event(id));
  await eventually(() => sink.delivered.length === 2, 5000, 5);
  const { readdirSync, readFileSync } = await import('node:fs');
  await eventually(
    () =>
      readdirSync(`${dir}/dead/fake`).some((f) =>
        readFileSync(`${dir}/dead/fake/${f}`, 'utf8').endsWith('\n'),
      ),
    5000,
    5,
  );
  const line = JSON.parse(
    readFileSync(`${dir}/dead/fake/${readdirSync(`${dir}/dead/fake`)[0]}`, 'utf8'),
  ) as { reason: string; event: { id: string } };
  t.equal(line.event.id, 'big');
  t.equal(line.reason, 'too large');
  t.same(sink.delivered, ['a', 'b']);
});

t.test('drain spools what the sink cannot take before the deadline', async (t) => {
  const { sink, spool, dispatcher } = setup(t);
  sink.down = true;
  for (let i = 0; i < 5; i += 1) dispatcher.push(event(`d${i}`));
  const spooled = await dispatcher.drain(50);
  t.ok(spooled >= 1, `spooled ${spooled}`);
  t.equal(spool.records, 5, 'every event is in the spool');
  t.equal(dispatcher.unpersisted, 0);
});

t.test('backoff is full jitter, capped', async (t) => {
  t.equal(
    backoffMs(1, 100, 30_000, () => 0.999),
    99,
  );
  t.equal(
    backoffMs(4, 100, 30_000, () => 0.5),
    400,
  );
  t.equal(
    backoffMs(30, 100, 30_000, () => 0.999),
    29_970,
  );
  t.equal(
    backoffMs(3, 100, 30_000, () => 0),
    0,
  );
});
