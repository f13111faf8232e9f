/** The sink contract (§3.8): write a batch and resolve once it is acked, probe, close. */

/** What a sink needs to know about one event besides its bytes. */
export interface EventMeta {
  id: string;
  tenant: string;
  receivedAt: number;
  visitorId: string | null;
  sessionId: string | null;
}

export interface SinkEvent {
  /** The envelope bytes, encoded once, without a newline. */
  data: Buffer;
  meta: EventMeta;
}

export interface WriteResult {
  /** Events the sink can never take (oversize), by index in the batch; the rest were acked. */
  fatal: { index: number; reason: string }[];
}

export interface Sink {
  readonly name: string;
  readonly type: string;
  /** Resolves when every event of the batch is acked or listed as fatal; rejects when retryable. */
  write(batch: readonly SinkEvent[]): Promise<WriteResult>;
  /** A cheap health check; rejects while the backend is unreachable. */
  probe(): Promise<void>;
  /** Flushes and releases connections and files. */
  close(): Promise<void>;
}

export const NO_FATAL: WriteResult = { fatal: [] };

/** A failure of a sink write; the dispatcher retries it. */
export class SinkWriteError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SinkWriteError';
  }
}

/** The event's metadata, read back from its envelope bytes (spool and WAL records). */
export function metaFromEnvelope(data: Buffer): EventMeta {
  const parsed = JSON.parse(data.toString('utf8')) as {
    id?: unknown;
    tenant?: unknown;
    received_at?: unknown;
    visitor_id?: unknown;
    session_id?: unknown;
  };
  return {
    id: typeof parsed.id === 'string' ? parsed.id : '',
    tenant: typeof parsed.tenant === 'string' ? parsed.tenant : '',
    receivedAt: typeof parsed.received_at === 'number' ? parsed.received_at : Date.now(),
    visitorId: typeof parsed.visitor_id === 'string' ? parsed.visitor_id : null,
    sessionId: typeof parsed.session_id === 'string' ? parsed.session_id : null,
  };
}

/** The message key a kafka or rafka sink uses for an event. */
export function eventKey(
  meta: EventMeta,
  key: 'visitor_id' | 'id' | 'session_id' | 'none',
): string | null {
  if (key === 'none') return null;
  if (key === 'id') return meta.id;
  if (key === 'session_id') return meta.sessionId;
  return meta.visitorId;
}
