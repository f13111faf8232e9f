// Which consumer crashes are Kafka out of reach (the consumer starts over, BLPOP answers *-1) and
// which the client must see as `CONS Poll`, with kafkajs's own error classes.
import t from 'tap';
import kafkajs from 'kafkajs';
import { isUnreachableCrash } from '../../src/rafka/kafkajs-adapter.js';

// The typings leave some classes out and some constructor arguments too; the runtime has them.
const errors = kafkajs as unknown as Record<string, new (...args: unknown[]) => Error>;
const kafkaError = (name: string, ...args: unknown[]): Error => new errors[name](...args);
const wrapped = (cause: Error): Error =>
  kafkaError('KafkaJSNonRetriableError', 'the runner failed', { cause });

const CASES: [string, unknown, boolean][] = [
  [
    'coordinator not found',
    kafkaError('KafkaJSGroupCoordinatorNotFound', 'Failed to find group coordinator'),
    true,
  ],
  [
    'connection refused',
    kafkaError('KafkaJSConnectionError', 'Connection error: connect ECONNREFUSED'),
    true,
  ],
  ['connection closed', kafkaError('KafkaJSConnectionClosedError', 'Closed connection'), true],
  [
    'request timeout',
    kafkaError('KafkaJSRequestTimeoutError', 'Request requestInfo timed out'),
    true,
  ],
  ['broker not found', kafkaError('KafkaJSBrokerNotFound', 'Broker not found in cluster'), true],
  [
    'retries exhausted',
    kafkaError('KafkaJSNumberOfRetriesExceeded', new Error('x'), { retryCount: 5 }),
    true,
  ],
  [
    'coordinator lookup as a cause',
    wrapped(kafkaError('KafkaJSGroupCoordinatorNotFound', 'lost')),
    true,
  ],
  [
    'a protocol error',
    kafkaError('KafkaJSProtocolError', {
      message: 'Not authorized',
      type: 'GROUP_AUTHORIZATION_FAILED',
    }),
    false,
  ],
  [
    'a plain non-retriable error',
    kafkaError('KafkaJSNonRetriableError', 'Invalid assignment'),
    false,
  ],
  ['a plain Error', new Error('boom'), false],
  ['not an error', 'boom', false],
  ['nothing', undefined, false],
];

for (const [name, error, unreachable] of CASES) {
  t.equal(isUnreachableCrash(error), unreachable, name);
}
