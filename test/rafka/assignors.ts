// Kafka's standard range and roundrobin assignment.
import t from 'tap';
import { rangeAssign, roundRobinAssign, type Plan } from '../../src/rafka/assignors.js';

const plain = (plan: Plan) =>
  Object.fromEntries([...plan].map(([member, topics]) => [member, Object.fromEntries(topics)]));

t.test('range gives contiguous ranges, the first members one extra', async (t) => {
  const members = [
    { memberId: 'b', topics: ['t'] },
    { memberId: 'a', topics: ['t'] },
  ];
  t.same(plain(rangeAssign(members, new Map([['t', 5]]))), {
    a: { t: [0, 1, 2] },
    b: { t: [3, 4] },
  });
});

t.test('members only get topics they subscribed to', async (t) => {
  const members = [
    { memberId: 'a', topics: ['t', 'u'] },
    { memberId: 'b', topics: ['t'] },
  ];
  const counts = new Map([
    ['t', 2],
    ['u', 2],
  ]);
  t.same(plain(rangeAssign(members, counts)), { a: { t: [0], u: [0, 1] }, b: { t: [1] } });
  t.same(plain(roundRobinAssign(members, counts)), { a: { t: [0], u: [0, 1] }, b: { t: [1] } });
});

t.test('roundrobin deals partitions round the sorted members', async (t) => {
  const members = [
    { memberId: 'm2', topics: ['t'] },
    { memberId: 'm1', topics: ['t'] },
  ];
  t.same(plain(roundRobinAssign(members, new Map([['t', 4]]))), {
    m1: { t: [0, 2] },
    m2: { t: [1, 3] },
  });
});
