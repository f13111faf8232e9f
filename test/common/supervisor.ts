import t from 'tap';
import { EventEmitter } from 'node:events';
import type { Service } from '../../src/common/component.js';
import { silentLogger } from '../../src/common/logger.js';
import { supervise } from '../../src/common/supervisor.js';

interface FakeService extends Service {
  closes: number;
  destroyed: boolean;
  finishClose: (code: number) => void;
  endOnItsOwn: (code: number) => void;
}

// A service whose close() completes only when the test says so: pure lifecycle logic.
function fakeService(shutdownTimeoutMs = 5000): FakeService {
  let finishClose: (code: number) => void = () => undefined;
  let endOnItsOwn: (code: number) => void = () => undefined;
  const closing = new Promise<number>((resolve) => (finishClose = resolve));
  const done = new Promise<number>((resolve) => (endOnItsOwn = resolve));
  const service: FakeService = {
    closes: 0,
    destroyed: false,
    shutdownTimeoutMs,
    done,
    close: () => {
      service.closes += 1;
      return closing;
    },
    destroy: () => {
      service.destroyed = true;
    },
    finishClose: (code) => finishClose(code),
    endOnItsOwn: (code) => endOnItsOwn(code),
  };
  return service;
}

t.test('the first signal closes gracefully with the close() exit code', async (t) => {
  const signals = new EventEmitter();
  const service = fakeService();
  const result = supervise(service, silentLogger(), signals as never);
  signals.emit('SIGTERM', 'SIGTERM');
  t.equal(service.closes, 1);
  service.finishClose(0);
  t.same(await result, { code: 0, forced: false });
  t.equal(signals.listenerCount('SIGTERM'), 0, 'handlers are removed');
});

t.test('a second signal forces the stop with exit 1', async (t) => {
  const signals = new EventEmitter();
  const service = fakeService();
  const result = supervise(service, silentLogger(), signals as never);
  signals.emit('SIGINT', 'SIGINT');
  signals.emit('SIGTERM', 'SIGTERM');
  t.same(await result, { code: 1, forced: true });
  t.equal(service.destroyed, true);
  t.equal(service.closes, 1, 'close is not called again');
});

t.test('a missed shutdown deadline forces the stop', async (t) => {
  const signals = new EventEmitter();
  const service = fakeService(50);
  const result = supervise(service, silentLogger(), signals as never);
  signals.emit('SIGTERM', 'SIGTERM');
  t.same(await result, { code: 1, forced: true });
  t.equal(service.destroyed, true);
});

t.test('a service that ends by itself ends supervision with its code', async (t) => {
  const signals = new EventEmitter();
  const service = fakeService();
  const result = supervise(service, silentLogger(), signals as never);
  service.endOnItsOwn(1);
  t.same(await result, { code: 1, forced: false });
});

t.test('SIGHUP calls reload when the service has one', async (t) => {
  const signals = new EventEmitter();
  const service = fakeService();
  let reloads = 0;
  service.reload = () => {
    reloads += 1;
    return Promise.resolve();
  };
  const result = supervise(service, silentLogger(), signals as never);
  signals.emit('SIGHUP', 'SIGHUP');
  t.equal(reloads, 1);
  service.endOnItsOwn(0);
  await result;
});
