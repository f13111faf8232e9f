// Byte-exact RESP exchanges against the built executable: replies, error texts, the parser limits,
// names, MONITOR and KEYS (spec §7 scenarios 1–4).
import t, { type Test } from 'tap';
import { RawClient, createTopics, encodeCommand, startRafka } from '../helpers/rafka.js';
import { uniqueId } from '../helpers/services.js';

const rafka = await startRafka(t);
const open = (tt: Test) => RawClient.open(tt, rafka.port);

t.test('simple exchanges are byte exact', async (t) => {
  const c = await open(t);
  const name = `${uniqueId('app')}:c1`;
  await c.expect('PING\r\n', '+PONG\r\n');
  await c.expect(encodeCommand(['ping', 'ignored']), '+PONG\r\n');
  await c.expect(encodeCommand(['client', 'setname', name]), '$2\r\nOK\r\n');
  await c.expect(encodeCommand(['CLIENT', 'GETNAME']), `$${name.length}\r\n${name}\r\n`);
  await c.expect(encodeCommand(['DEL', 'stats']), ':1\r\n');
  await c.expect(
    encodeCommand(['hgetall', 'stats']),
    '*6\r\n$27\r\nproducer.unflushed.messages\r\n$1\r\n0\r\n$24\r\nproducer.delivery.errors\r\n$1\r\n0\r\n$23\r\nproducer.unknown.events\r\n$1\r\n0\r\n',
  );
  await c.expect(encodeCommand(['DUMP', 'whatever', 'more']), ':0\r\n');
  await c.expect(encodeCommand(['QUIT']), '$2\r\nOK\r\n');
  await c.waitClosed();
});

const ERRORS: { name: string; args: string[]; reply: string }[] = [
  { name: 'unknown command', args: ['GET', 'x'], reply: '-Command not supported: GET\r\n' },
  {
    name: 'lowercase unknown command',
    args: ['auth', 'x'],
    reply: '-Command not supported: AUTH\r\n',
  },
  {
    name: 'unknown CLIENT subcommand',
    args: ['CLIENT', 'list'],
    reply: '-Command not supported: LIST\r\n',
  },
  { name: 'bare CLIENT', args: ['CLIENT'], reply: '-Command not supported: \r\n' },
  {
    name: 'SETNAME without colon',
    args: ['CLIENT', 'SETNAME', 'nocolon'],
    reply: '-CONS Cannot parse group.id\r\n',
  },
  {
    name: 'BLPOP bad key',
    args: ['BLPOP', 'topic:x', '1'],
    reply: '-CONS Cannot parse topics from `topic:x`\r\n',
  },
  {
    name: 'BLPOP one part',
    args: ['BLPOP', 'topics', '1'],
    reply: '-CONS Cannot parse topics from `topics`\r\n',
  },
  {
    name: 'BLPOP anonymous',
    args: ['BLPOP', 'topics:x', '1'],
    reply: '-CONS Connection not ready. Identify yourself using `CLIENT SETNAME` first\r\n',
  },
  {
    name: 'RPUSH to another key',
    args: ['RPUSH', 'foo', 'x:1:2'],
    reply: "-CONS You can only RPUSH to the 'acks' key\r\n",
  },
  {
    name: 'ack too short',
    args: ['RPUSH', 'acks', 'x:1'],
    reply: "-CONS Cannot parse ack: 'x:1'\r\n",
  },
  {
    name: 'ack bad partition',
    args: ['RPUSH', 'acks', 'x:a:1'],
    reply: '-CONS strconv.ParseInt: parsing "a": invalid syntax\r\n',
  },
  {
    name: 'ack bad offset beats no consumer',
    args: ['RPUSH', 'ACKS', 'x:1:zz'],
    reply: '-CONS strconv.ParseInt: parsing "zz": invalid syntax\r\n',
  },
  {
    name: 'ack offset out of range',
    args: ['RPUSH', 'acks', 'x:1:99999999999999999999'],
    reply: '-CONS strconv.ParseInt: parsing "99999999999999999999": value out of range\r\n',
  },
  {
    name: 'RPUSHX arity',
    args: ['RPUSHX', 'topics:x'],
    reply: '-PROD RPUSHX accepts 2 arguments, got 1\r\n',
  },
  {
    name: 'RPUSHX key shape',
    args: ['RPUSHX', 'topicsx', 'v'],
    reply:
      "-PROD First argument must be in the form of 'topics:<topic>' or 'topics:<topic>:<key>'\r\n",
  },
  {
    name: 'RPUSHX empty topic',
    args: ['RPUSHX', 'topics:', 'v'],
    reply: '-PROD Local: Invalid argument or configuration\r\n',
  },
  {
    name: 'KEYS pattern',
    args: ['KEYS', '*'],
    reply: "-ERR Expected argument to be 'topics:', got *\r\n",
  },
  {
    name: 'HGETALL key',
    args: ['HGETALL', 'foo'],
    reply: "-ERR Expected key to be 'stats', got FOO\r\n",
  },
  { name: 'DEL key', args: ['DEL', 'foo'], reply: "-ERR Expected key to be 'stats', got FOO\r\n" },
  {
    name: 'MONITOR arguments',
    args: ['MONITOR', 'x'],
    reply: "-ERR command 'monitor' does not accept any extra arguments\r\n",
  },
];

t.test('error texts', async (t) => {
  const c = await open(t);
  for (const e of ERRORS) t.equal(await c.expect(encodeCommand(e.args), e.reply), e.reply, e.name);
  t.equal(
    await c.expect('*0\r\n', '-Command not supported: \r\n'),
    '-Command not supported: \r\n',
    '*0',
  );
  // The connection stays open after command errors.
  await c.expect('PING\r\n', '+PONG\r\n');
});

t.test('SETNAME checks and their order', async (t) => {
  const a = await open(t);
  const b = await open(t);
  const name = `${uniqueId('grp')}:one`;
  await a.expect(encodeCommand(['CLIENT', 'SETNAME', name]), '$2\r\nOK\r\n');
  const taken = `-CONS id ${name} is already taken\r\n`;
  t.equal(await b.expect(encodeCommand(['CLIENT', 'SETNAME', name]), taken), taken);
  t.equal(
    await a.expect(encodeCommand(['CLIENT', 'SETNAME', name]), taken),
    taken,
    'taken beats already set',
  );
  const already = `-CONS Client ID is already set to ${name}\r\n`;
  t.equal(await a.expect(encodeCommand(['CLIENT', 'SETNAME', 'other:x']), already), already);
  // A second BLPOP key error beats SETNAME checks; DUMP with producer state checks arity.
  await a.expect(encodeCommand(['RPUSHX', 'topics:x', 'v']), ':1\r\n');
  t.equal(
    await a.expect(encodeCommand(['DUMP']), '-PROD DUMP accepts 1 argument, got 0\r\n'),
    '-PROD DUMP accepts 1 argument, got 0\r\n',
  );
  t.equal(await a.expect(encodeCommand(['DUMP', 'x']), '-PROD NaN\r\n'), '-PROD NaN\r\n');
  // An anonymous GETNAME is ip:port.
  const anon = await b.call('CLIENT', 'GETNAME');
  t.match(anon, /^127\.0\.0\.1:\d+$/);
  // QUIT releases the name before replying; an immediate reconnect may take it.
  await a.expect(encodeCommand(['QUIT']), '$2\r\nOK\r\n');
  t.equal(await b.call('CLIENT', 'SETNAME', name), 'OK');
});

t.test(
  '100 concurrent connections each see their own name; one of two racing SETNAMEs wins',
  async (t) => {
    const group = uniqueId('many');
    const clients = await Promise.all(Array.from({ length: 100 }, () => open(t)));
    await Promise.all(clients.map((c, i) => c.call('CLIENT', 'SETNAME', `${group}:${i}`)));
    const names = await Promise.all(clients.map((c) => c.call('CLIENT', 'GETNAME')));
    t.same(
      names,
      clients.map((_c, i) => `${group}:${i}`),
    );
    const [x, y] = await Promise.all([open(t), open(t)]);
    const racing = `${group}:race`;
    const replies = await Promise.all([x, y].map((c) => c.call('CLIENT', 'SETNAME', racing)));
    t.equal(replies.filter((r) => r === 'OK').length, 1, 'exactly one wins');
    for (const c of clients) c.socket.destroy();
  },
);

const PROTOCOL: { name: string; input: string; error: string }[] = [
  { name: 'too many arguments', input: '*21\r\n', error: 'TooManyArg' },
  { name: 'bulk too large', input: '*1\r\n$32768001\r\n', error: 'Invalid bulk size' },
  { name: 'item type', input: '*1\r\n:1\r\n', error: 'Expect TypeChar' },
  { name: 'length digit', input: '*1\r\n$a\r\n', error: 'Expect Number' },
  { name: 'newline', input: '*1\r\n$1\r\nab', error: 'Expect Newline' },
  { name: 'line too long', input: `${'x'.repeat(1100)}\r\n`, error: 'LineTooLong' },
];

t.test('protocol errors reply and close, after answering what came before', async (t) => {
  for (const p of PROTOCOL) {
    const c = await open(t);
    const reply = `+PONG\r\n-${p.error}\r\n`;
    t.equal(await c.expect(`PING\r\n${p.input}`, reply), reply, p.name);
    await c.waitClosed();
  }
});

t.test('ignored inputs do not crash the server', async (t) => {
  const c = await open(t);
  await c.expect('*-1\r\n\r\n\nPING\n', '+PONG\r\n');
  await c.expect(encodeCommand(['CLIENT', 'SETNAME', `${uniqueId('ign')}:x`]), '$2\r\nOK\r\n');
  const topic = uniqueId('absent');
  for (const timeout of ['0', '-1', 'abc']) {
    // Default timeout is 5 s; the process must survive and answer a null array.
    c.write(encodeCommand(['BLPOP', `topics:${topic}`, timeout]));
  }
  await c.expect('PING\r\n', '*-1\r\n*-1\r\n*-1\r\n+PONG\r\n', 20_000);
});

t.test('10,000 pipelined commands in one write are answered in order', async (t) => {
  const c = await open(t);
  const parts: Buffer[] = [];
  let expected = '';
  for (let i = 0; i < 10_000; i++) {
    if (i % 2 === 0) {
      parts.push(Buffer.from('PING\r\n'));
      expected += '+PONG\r\n';
    } else {
      parts.push(encodeCommand(['HGETALL', `x${i}`]));
      expected += `-ERR Expected key to be 'stats', got X${i}\r\n`;
    }
  }
  c.write(Buffer.concat(parts));
  t.equal(await c.readBytes(Buffer.byteLength(expected), 20_000), expected);
});

t.test('MONITOR shows the issuer, escaped; KEYS lists topics sorted', async (t) => {
  const [topic] = await createTopics(t, 1, 1);
  const monitor = await open(t);
  await monitor.expect('MONITOR\r\n', '+OK\r\n');
  const producer = await open(t);
  const name = `${uniqueId('mon')}:p`;
  await producer.call('CLIENT', 'SETNAME', name);
  await producer.call('RPUSHX', `topics:${topic}`, 'a\r\nb');
  const lines = [await monitor.read(), await monitor.read()];
  t.match(
    lines[0],
    new RegExp(`^\\d+\\.\\d{6} \\[0 127\\.0\\.0\\.1:\\d+\\] "CLIENT" "SETNAME" "${name}"$`),
  );
  t.match(
    lines[1],
    new RegExp(`^\\d+\\.\\d{6} \\[0 ${name}\\] "RPUSHX" "topics:${topic}" "a\\\\r\\\\nb"$`),
  );
  // The monitor keeps answering its own commands (and sees them first).
  monitor.write('PING\r\n');
  t.match(await monitor.read(), /"PING"$/);
  t.equal(await monitor.read(), 'PONG');
  const fresh = await open(t);
  const keys = await fresh.call('KEYS', 'topics:');
  t.ok(Array.isArray(keys));
  const list = keys as string[];
  t.ok(list.includes(`topics:${topic}`), 'the created topic is listed');
  t.ok(list.includes('topics:__consumer_offsets'), 'internal topics are listed');
  t.same([...list].sort(), list, 'sorted');
  t.equal(await fresh.expect(encodeCommand(['DUMP', 'x']), '-PROD NaN\r\n'), '-PROD NaN\r\n');
});

t.test('a monitor pipelining its own commands gets each line before its reply', async (t) => {
  const monitor = await open(t);
  await monitor.expect('MONITOR\r\n', '+OK\r\n');
  // One write: the replies are coalesced, the monitor lines must stay interleaved with them.
  monitor.write('PING\r\nPING\r\n');
  const got = [
    await monitor.read(),
    await monitor.read(),
    await monitor.read(),
    await monitor.read(),
  ];
  t.match(got[0], /"PING"$/);
  t.equal(got[1], 'PONG');
  t.match(got[2], /"PING"$/);
  t.equal(got[3], 'PONG');
});

t.test('replies after a command that waits keep their order in one pipeline', async (t) => {
  const c = await open(t);
  // KEYS answers asynchronously; the PINGs and the error behind it wait for it.
  c.write(
    Buffer.concat([
      encodeCommand(['KEYS', 'topics:']),
      Buffer.from('PING\r\n'),
      encodeCommand(['HGETALL', 'x']),
      Buffer.from('PING\r\n'),
    ]),
  );
  const keys = await c.read();
  t.ok(Array.isArray(keys), 'KEYS first');
  t.equal(await c.read(), 'PONG');
  const error = await c.read();
  t.ok(error instanceof Error, 'the HGETALL error third');
  t.match((error as Error).message, /Expected key to be 'stats', got X/);
  t.equal(await c.read(), 'PONG');
});
