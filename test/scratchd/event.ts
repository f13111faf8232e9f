// Validation and envelope (spec §3.3, §3.4): pure logic, table cases.
import t from 'tap';
import {
  buildEnvelope,
  firstLanguage,
  parseQuery,
  pixelEvent,
  validateEvent,
  type DropReason,
  type RawEvent,
} from '../../src/scratchd/event.js';
import { uuidv7 } from '../../src/scratchd/uuid.js';

const NOW = 1_717_243_200_123;
const opts = (source: 'pixel' | 'e') => ({
  source,
  receivedAt: NOW,
  pastS: 604_800,
  futureS: 3600,
});

t.test('validation rules, pixel versus JSON', async (t) => {
  const cases: {
    name: string;
    raw: RawEvent;
    pixel: string;
    json: string;
    drops?: DropReason[];
  }[] = [
    { name: 'defaults', raw: {}, pixel: 'ok', json: 'ok' },
    { name: 'short type', raw: { type: 'srch' }, pixel: 'ok', json: 'ok' },
    { name: 'unknown type', raw: { type: 'bogus' }, pixel: 'reject', json: 'reject' },
    { name: 'custom without name', raw: { type: 'cst' }, pixel: 'reject', json: 'reject' },
    {
      name: 'custom with control char',
      raw: { type: 'custom', name: 'a\u0001' },
      pixel: 'reject',
      json: 'reject',
    },
    { name: 'custom ok', raw: { type: 'custom', name: 'add_to_cart' }, pixel: 'ok', json: 'ok' },
    { name: 'bad id', raw: { id: 'no spaces' }, pixel: 'ok', json: 'reject', drops: ['bad_id'] },
    {
      name: 'id too long',
      raw: { id: 'a'.repeat(65) },
      pixel: 'ok',
      json: 'reject',
      drops: ['bad_id'],
    },
    { name: 'ts not a number', raw: { ts: 'soon' }, pixel: 'ok', json: 'reject' },
    {
      name: 'javascript url',
      raw: { url: 'javascript:alert(1)' },
      pixel: 'ok',
      json: 'ok',
      drops: ['url'],
    },
    {
      name: 'nested prop',
      raw: { props: { a: { b: 1 } } },
      pixel: 'ok',
      json: 'ok',
      drops: ['prop'],
    },
    {
      name: 'bad prop key',
      raw: { props: { 'A-B': 'x' } },
      pixel: 'ok',
      json: 'ok',
      drops: ['prop'],
    },
    { name: 'props not an object', raw: { props: [1] }, pixel: 'reject', json: 'reject' },
    {
      name: 'bad visitor id',
      raw: { visitor_id: '!' },
      pixel: 'ok',
      json: 'ok',
      drops: ['bad_id'],
    },
  ];
  for (const c of cases) {
    for (const source of ['pixel', 'e'] as const) {
      const result = validateEvent(c.raw, opts(source));
      const expected = source === 'pixel' ? c.pixel : c.json;
      t.equal(result.ok ? 'ok' : 'reject', expected, `${c.name} (${source})`);
      if (result.ok && c.drops) t.same(result.drops, c.drops, `${c.name} (${source}) drops`);
    }
  }
});

t.test('client clock window and truncation', async (t) => {
  const inside = validateEvent({ ts: NOW - 1000 }, opts('e'));
  const past = validateEvent({ ts: NOW - 604_801_000 }, opts('e'));
  const future = validateEvent({ ts: String(NOW + 3_601_000) }, opts('pixel'));
  if (!inside.ok || !past.ok || !future.ok) throw new Error('unexpected rejection');
  t.equal(inside.fields.clientTs, NOW - 1000);
  t.equal(inside.fields.clockSkew, false);
  t.equal(past.fields.clientTs, null);
  t.equal(past.fields.clockSkew, true);
  t.equal(future.fields.clockSkew, true);
  const long = validateEvent(
    { url: `https://a.b/${'x'.repeat(3000)}`, title: 't'.repeat(300) },
    opts('e'),
  );
  if (!long.ok) throw new Error('rejected');
  t.equal(long.fields.url?.length, 2048);
  t.equal(long.fields.title?.length, 256);
  const many: Record<string, number> = {};
  for (let i = 0; i < 60; i += 1) many[`k${i}`] = i;
  const capped = validateEvent({ props: many }, opts('e'));
  if (!capped.ok) throw new Error('rejected');
  t.equal(Object.keys(capped.fields.props).length, 50);
  t.equal(capped.drops.filter((d) => d === 'prop').length, 10);
});

t.test('query parsing: first value wins, + is a space, bad encodings fail', async (t) => {
  t.same(
    [...(parseQuery('a=1&a=2&b=x+y&c') ?? [])],
    [
      ['a', '1'],
      ['b', 'x y'],
      ['c', ''],
    ],
  );
  t.equal(parseQuery('u=%E0%A4%A'), undefined);
  t.equal(parseQuery('u=%FF'), undefined, 'invalid UTF-8');
  t.same([...(parseQuery('q=%CE%B1') ?? [])], [['q', 'α']]);
  const drops: DropReason[] = [];
  const raw = pixelEvent(
    parseQuery('e=clk&u=https%3A%2F%2Fa.b%2F&p.pos=3&zz=1&cb=9&tid=gr') ??
      new Map<string, string>(),
    false,
    drops,
  );
  t.same(raw, { type: 'clk', url: 'https://a.b/', props: { pos: '3' } });
  t.same(drops, ['unknown_param']);
  const kept = pixelEvent(parseQuery('zz=1') ?? new Map<string, string>(), true, []);
  t.same(kept.props, { zz: '1' });
});

t.test('envelope key order and UUIDv7', async (t) => {
  const ok = validateEvent({ type: 'pv', props: { pos: 3 } }, opts('pixel'));
  if (!ok.ok) throw new Error('rejected');
  const id = uuidv7(NOW);
  t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(
    parseInt(id.replace(/-/g, '').slice(0, 12), 16),
    NOW,
    'the timestamp is the first 48 bits',
  );
  const env = buildEnvelope(
    'gr',
    id,
    NOW,
    ok.fields,
    { visitorId: 'v', sessionId: 's', userId: null },
    {
      ip: '203.0.113.0',
      ua: 'UA',
      lang: 'el-GR',
      bot: false,
      dnt: false,
      clockSkew: false,
      trusted: false,
      source: 'pixel',
      instance: 'i-1',
    },
  );
  t.same(Object.keys(env), [
    'v',
    'id',
    'tenant',
    'type',
    'name',
    'received_at',
    'client_ts',
    'url',
    'referrer',
    'title',
    'visitor_id',
    'session_id',
    'user_id',
    'props',
    'ctx',
  ]);
  t.same(Object.keys(env.ctx), [
    'ip',
    'ua',
    'lang',
    'bot',
    'dnt',
    'clock_skew',
    'trusted',
    'source',
    'instance',
  ]);
  t.equal(firstLanguage('el-GR,el;q=0.9,en;q=0.8'), 'el-GR');
  t.equal(firstLanguage(undefined), null);
  t.equal(firstLanguage(`${'a'.repeat(40)}`)?.length, 35);
});
