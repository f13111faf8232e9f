/**
 * The librdkafka-style JSON config (`general`, `consumer`, `producer`): shape checks, the merge of
 * `general` into both roles, validation against the properties rafka understands, and the
 * mapping to a neutral typed config that the Kafka adapter turns into kafkajs options (§3.2).
 */

export type Section = 'general' | 'consumer' | 'producer';
export type Role = 'consumer' | 'producer';
export type RawSection = Record<string, string | number | boolean>;

export interface RawConfig {
  general: RawSection;
  consumer: RawSection;
  producer: RawSection;
}

/** One problem, printed as `config <file>: <section>: <property>: <reason>`. */
export interface ConfigProblem {
  section: string;
  property: string;
  reason: string;
}

export function formatProblem(file: string, problem: ConfigProblem): string {
  return `config ${file}: ${problem.section}: ${problem.property}: ${problem.reason}`;
}

type Kind =
  | { type: 'int'; min?: number; max?: number }
  | { type: 'number'; min: number }
  | { type: 'bool' }
  | { type: 'string' }
  | { type: 'brokers' }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'list'; values: readonly string[] };

interface Property {
  name: string;
  aliases?: readonly string[];
  role: Role | 'both';
  kind: Kind;
}

const int = (min?: number, max?: number): Kind => ({ type: 'int', min, max });
const bool: Kind = { type: 'bool' };
const only = (value: string): Kind => ({ type: 'enum', values: [value] });
const oneOf = (...values: string[]): Kind => ({ type: 'enum', values });

const PROPERTIES: readonly Property[] = [
  {
    name: 'bootstrap.servers',
    aliases: ['metadata.broker.list'],
    role: 'both',
    kind: { type: 'brokers' },
  },
  { name: 'client.id', role: 'both', kind: { type: 'string' } },
  { name: 'socket.timeout.ms', role: 'both', kind: int(1) },
  { name: 'socket.connection.setup.timeout.ms', role: 'both', kind: int(1) },
  { name: 'topic.metadata.refresh.interval.ms', role: 'both', kind: int(1) },
  { name: 'retry.backoff.ms', role: 'both', kind: int(1) },
  { name: 'allow.auto.create.topics', role: 'both', kind: bool },
  { name: 'log_level', role: 'both', kind: int(0, 7) },
  { name: 'security.protocol', role: 'both', kind: oneOf('plaintext') },
  { name: 'api.version.request', role: 'both', kind: only('true') },
  { name: 'log.connection.close', role: 'both', kind: bool },
  { name: 'go.events.channel.size', role: 'both', kind: int(0) },
  { name: 'group.id', role: 'consumer', kind: { type: 'string' } },
  { name: 'session.timeout.ms', role: 'consumer', kind: int(1) },
  { name: 'heartbeat.interval.ms', role: 'consumer', kind: int(1) },
  { name: 'max.poll.interval.ms', role: 'consumer', kind: int(1) },
  {
    name: 'partition.assignment.strategy',
    role: 'consumer',
    kind: { type: 'list', values: ['range', 'roundrobin'] },
  },
  { name: 'enable.auto.commit', role: 'consumer', kind: bool },
  { name: 'auto.commit.interval.ms', role: 'consumer', kind: int(1) },
  { name: 'enable.auto.offset.store', role: 'consumer', kind: only('false') },
  {
    name: 'auto.offset.reset',
    role: 'consumer',
    kind: oneOf('smallest', 'earliest', 'beginning', 'largest', 'latest', 'end'),
  },
  { name: 'fetch.wait.max.ms', role: 'consumer', kind: int(0) },
  { name: 'fetch.min.bytes', role: 'consumer', kind: int(1) },
  { name: 'fetch.max.bytes', role: 'consumer', kind: int(1) },
  {
    name: 'max.partition.fetch.bytes',
    aliases: ['fetch.message.max.bytes'],
    role: 'consumer',
    kind: int(1),
  },
  { name: 'isolation.level', role: 'consumer', kind: oneOf('read_committed', 'read_uncommitted') },
  { name: 'enable.partition.eof', role: 'consumer', kind: bool },
  { name: 'go.events.channel.enable', role: 'consumer', kind: bool },
  { name: 'go.application.rebalance.enable', role: 'consumer', kind: only('false') },
  {
    name: 'acks',
    aliases: ['request.required.acks'],
    role: 'producer',
    kind: oneOf('-1', 'all', '0', '1'),
  },
  { name: 'request.timeout.ms', role: 'producer', kind: int(1) },
  {
    name: 'message.timeout.ms',
    aliases: ['delivery.timeout.ms'],
    role: 'producer',
    kind: int(1),
  },
  { name: 'message.send.max.retries', aliases: ['retries'], role: 'producer', kind: int(0) },
  {
    name: 'linger.ms',
    aliases: ['queue.buffering.max.ms'],
    role: 'producer',
    kind: { type: 'number', min: 0 },
  },
  { name: 'batch.num.messages', role: 'producer', kind: int(1) },
  { name: 'queue.buffering.max.messages', role: 'producer', kind: int(1) },
  { name: 'queue.buffering.max.kbytes', role: 'producer', kind: int(1) },
  { name: 'message.max.bytes', role: 'producer', kind: int(1) },
  {
    name: 'compression.codec',
    aliases: ['compression.type'],
    role: 'producer',
    kind: oneOf('none', 'gzip'),
  },
  { name: 'enable.idempotence', role: 'producer', kind: bool },
  {
    name: 'max.in.flight.requests.per.connection',
    aliases: ['max.in.flight'],
    role: 'producer',
    kind: int(1),
  },
  {
    name: 'partitioner',
    role: 'producer',
    kind: oneOf('consistent_random', 'consistent', 'random', 'murmur2_random'),
  },
  { name: 'go.delivery.reports', role: 'producer', kind: only('true') },
  { name: 'go.batch.producer', role: 'producer', kind: bool },
  { name: 'go.produce.channel.size', role: 'producer', kind: int(0) },
];

const BY_NAME = new Map<string, Property>();
for (const property of PROPERTIES) {
  BY_NAME.set(property.name, property);
  for (const alias of property.aliases ?? []) BY_NAME.set(alias, property);
}

function lookup(name: string): Property | undefined {
  const direct = BY_NAME.get(name);
  if (direct) return direct;
  // librdkafka accepts topic-level properties with a `{topic}.` prefix.
  if (name.startsWith('topic.')) return BY_NAME.get(name.slice('topic.'.length));
  return undefined;
}

/** Values after checking: canonical property name → typed value. */
export type CheckedValues = Map<string, number | boolean | string | string[]>;

function checkValue(
  kind: Kind,
  raw: string | number | boolean,
): number | boolean | string | string[] {
  // Returns the typed value, or a string starting with `!` as the failure reason.
  switch (kind.type) {
    case 'int': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && /^-?\d+$/.test(raw)
            ? Number(raw)
            : NaN;
      if (!Number.isSafeInteger(n)) return '!expected integer';
      if ((kind.min !== undefined && n < kind.min) || (kind.max !== undefined && n > kind.max)) {
        return `!unsupported value "${String(raw)}"`;
      }
      return n;
    }
    case 'number': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw)
            : NaN;
      if (!Number.isFinite(n) || n < kind.min) return `!unsupported value "${String(raw)}"`;
      return n;
    }
    case 'bool':
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      return '!expected boolean';
    case 'string':
      return String(raw);
    case 'brokers': {
      const list = String(raw)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (list.length === 0) return `!unsupported value "${String(raw)}"`;
      return list.map((b) => (/:\d+$/.test(b) ? b : `${b}:9092`));
    }
    case 'enum': {
      const text = String(raw);
      return kind.values.includes(text) ? text : `!unsupported value "${text}"`;
    }
    case 'list': {
      const items = String(raw)
        .split(',')
        .map((s) => s.trim());
      const bad = items.find((item) => !kind.values.includes(item));
      return bad === undefined && items.length > 0 ? items : `!unsupported value "${bad ?? ''}"`;
    }
  }
}

/** Checks one merged role section; properties of the other role are accepted and ignored. */
export function checkSection(
  section: string,
  role: Role,
  raw: RawSection,
  problems: ConfigProblem[],
): CheckedValues {
  const values: CheckedValues = new Map();
  for (const [name, value] of Object.entries(raw)) {
    const property = lookup(name);
    if (!property) {
      problems.push({ section, property: name, reason: 'unknown property' });
      continue;
    }
    const checked = checkValue(property.kind, value);
    if (typeof checked === 'string' && checked.startsWith('!')) {
      problems.push({ section, property: name, reason: checked.slice(1) });
      continue;
    }
    if (property.role === 'both' || property.role === role) values.set(property.name, checked);
  }
  if (!values.has('bootstrap.servers')) {
    problems.push({ section, property: 'bootstrap.servers', reason: 'required' });
  }
  return values;
}

/** Checks the top-level shape; returns the three sections with names lowered. */
export function parseShape(input: unknown, problems: ConfigProblem[]): RawConfig {
  const out: RawConfig = { general: {}, consumer: {}, producer: {} };
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    problems.push({ section: '(root)', property: '(root)', reason: 'expected an object' });
    return out;
  }
  for (const [key, value] of Object.entries(input as Record<string, unknown>)) {
    const section = key.toLowerCase();
    if (section !== 'general' && section !== 'consumer' && section !== 'producer') {
      problems.push({ section: key, property: '(section)', reason: 'unknown section' });
      continue;
    }
    out[section] = parseFlat(key, value, problems);
  }
  return out;
}

/** A flat object of property → string, number or boolean. */
export function parseFlat(section: string, value: unknown, problems: ConfigProblem[]): RawSection {
  const out: RawSection = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push({ section, property: '(section)', reason: 'expected an object' });
    return out;
  }
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[name] = v;
    else problems.push({ section, property: name, reason: 'expected a string, number or boolean' });
  }
  return out;
}

/** Copies `general` keys into a role section unless it has them; `-b` then overrides brokers. */
export function mergeSection(general: RawSection, own: RawSection, brokers?: string): RawSection {
  const merged: RawSection = { ...own };
  for (const [name, value] of Object.entries(general)) {
    const canonical = lookup(name)?.name ?? name;
    const present = Object.keys(own).some((k) => (lookup(k)?.name ?? k) === canonical);
    if (!present) merged[name] = value;
  }
  if (brokers !== undefined) {
    for (const alias of ['bootstrap.servers', 'metadata.broker.list']) delete merged[alias];
    merged['bootstrap.servers'] = brokers;
  }
  return merged;
}

/** Settings both roles share, mapped to what kafkajs needs. */
export interface CommonKafkaConfig {
  brokers: string[];
  clientId: string;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  metadataMaxAgeMs: number;
  retryBackoffMs: number;
  allowAutoTopicCreation: boolean;
  /** librdkafka syslog level 0–7. */
  logLevel: number;
}

export interface ConsumerConfig extends CommonKafkaConfig {
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  rebalanceTimeoutMs: number;
  assignors: ('range' | 'roundrobin')[];
  autoCommit: boolean;
  autoCommitIntervalMs: number;
  fromBeginning: boolean;
  maxWaitTimeMs: number;
  minBytes: number;
  maxBytes: number;
  maxBytesPerPartition: number;
  readUncommitted: boolean;
}

export type PartitionerName = 'consistent_random' | 'consistent' | 'random' | 'murmur2_random';

export interface ProducerConfig extends CommonKafkaConfig {
  acks: -1 | 0 | 1;
  sendTimeoutMs: number;
  messageTimeoutMs: number;
  retries: number;
  lingerMs: number;
  batchNumMessages: number;
  maxBufferedMessages: number;
  maxBufferedBytes: number;
  messageMaxBytes: number;
  compression: 'none' | 'gzip';
  idempotent: boolean;
  maxInFlightRequests: number | undefined;
  partitioner: PartitionerName;
}

function getter(values: CheckedValues) {
  return {
    int: (name: string, fallback: number): number =>
      (values.get(name) as number | undefined) ?? fallback,
    bool: (name: string, fallback: boolean): boolean =>
      (values.get(name) as boolean | undefined) ?? fallback,
    str: (name: string, fallback: string): string =>
      (values.get(name) as string | undefined) ?? fallback,
  };
}

function common(values: CheckedValues, role: Role): CommonKafkaConfig {
  const get = getter(values);
  return {
    brokers: (values.get('bootstrap.servers') as string[] | undefined) ?? [],
    clientId: get.str('client.id', 'rafka'),
    requestTimeoutMs: get.int('socket.timeout.ms', 60_000),
    connectionTimeoutMs: get.int('socket.connection.setup.timeout.ms', 30_000),
    metadataMaxAgeMs: get.int('topic.metadata.refresh.interval.ms', 300_000),
    retryBackoffMs: get.int('retry.backoff.ms', 100),
    allowAutoTopicCreation: get.bool('allow.auto.create.topics', role === 'producer'),
    logLevel: get.int('log_level', 6),
  };
}

export function toConsumerConfig(values: CheckedValues): ConsumerConfig {
  const get = getter(values);
  const reset = get.str('auto.offset.reset', 'largest');
  return {
    ...common(values, 'consumer'),
    sessionTimeoutMs: get.int('session.timeout.ms', 10_000),
    heartbeatIntervalMs: get.int('heartbeat.interval.ms', 3000),
    rebalanceTimeoutMs: get.int('max.poll.interval.ms', 300_000),
    assignors: (values.get('partition.assignment.strategy') as
      ('range' | 'roundrobin')[] | undefined) ?? ['range', 'roundrobin'],
    autoCommit: get.bool('enable.auto.commit', true),
    autoCommitIntervalMs: get.int('auto.commit.interval.ms', 5000),
    fromBeginning: ['smallest', 'earliest', 'beginning'].includes(reset),
    maxWaitTimeMs: get.int('fetch.wait.max.ms', 100),
    minBytes: get.int('fetch.min.bytes', 1),
    maxBytes: get.int('fetch.max.bytes', 52_428_800),
    maxBytesPerPartition: get.int('max.partition.fetch.bytes', 1_048_576),
    readUncommitted: get.str('isolation.level', 'read_committed') === 'read_uncommitted',
  };
}

export function toProducerConfig(values: CheckedValues): ProducerConfig {
  const get = getter(values);
  const acks = get.str('acks', '-1');
  const idempotent = get.bool('enable.idempotence', false);
  const inFlight = values.get('max.in.flight.requests.per.connection') as number | undefined;
  return {
    ...common(values, 'producer'),
    acks: acks === 'all' || acks === '-1' ? -1 : acks === '0' ? 0 : 1,
    sendTimeoutMs: get.int('request.timeout.ms', 30_000),
    messageTimeoutMs: get.int('message.timeout.ms', 300_000),
    retries: get.int('message.send.max.retries', 2),
    lingerMs: get.int('linger.ms', 5),
    batchNumMessages: get.int('batch.num.messages', 10_000),
    maxBufferedMessages: get.int('queue.buffering.max.messages', 100_000),
    maxBufferedBytes: get.int('queue.buffering.max.kbytes', 1_048_576) * 1024,
    messageMaxBytes: get.int('message.max.bytes', 1_000_000),
    compression: get.str('compression.codec', 'none') as 'none' | 'gzip',
    idempotent,
    maxInFlightRequests: idempotent ? 1 : inFlight,
    partitioner: get.str('partitioner', 'consistent_random') as PartitionerName,
  };
}

export interface LoadedConfig {
  raw: RawConfig;
  /** The consumer section after the merge, before per-client JSON. */
  consumerSection: RawSection;
  producerSection: RawSection;
  consumer: ConsumerConfig;
  producer: ProducerConfig;
}

/** Validates a parsed JSON document; returns the config or every problem found. */
export function loadKafkaConfig(
  input: unknown,
  brokers?: string,
): { config?: LoadedConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const raw = parseShape(input, problems);
  const consumerSection = mergeSection(raw.general, raw.consumer, brokers);
  const producerSection = mergeSection(raw.general, raw.producer, brokers);
  const consumerValues = checkSection('consumer', 'consumer', consumerSection, problems);
  const producerValues = checkSection('producer', 'producer', producerSection, problems);
  if (problems.length > 0) return { problems: dedupe(problems) };
  return {
    problems,
    config: {
      raw,
      consumerSection,
      producerSection,
      consumer: toConsumerConfig(consumerValues),
      producer: toProducerConfig(producerValues),
    },
  };
}

/**
 * The consumer config for one client: its BLPOP JSON merged over the consumer section and checked
 * by the same rules. Returns the problems instead when there are any.
 */
export function consumerConfigFor(
  base: RawSection,
  overrides: Record<string, unknown> | null,
): { config?: ConsumerConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const own = overrides === null ? {} : parseFlat('client', overrides, problems);
  const merged = mergeSection(base, own);
  for (const name of Object.keys(own)) {
    // A client property overrides the file's, including its aliases.
    const canonical = lookup(name)?.name;
    for (const key of Object.keys(base)) {
      if (key !== name && canonical !== undefined && lookup(key)?.name === canonical)
        delete merged[key];
    }
  }
  const values = checkSection('client', 'consumer', merged, problems);
  if (problems.length > 0) return { problems };
  return { problems, config: toConsumerConfig(values) };
}

/** A problem is reported once even when `general` copied it into both roles. */
function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.section}\0${p.property}\0${p.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
