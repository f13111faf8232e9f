/**
 * The BuildInfo record of the original mistry, shared by the server (which writes it to
 * `build_info.json` and answers `POST /jobs` with it) and the client (which reads it). Field names,
 * order and value formats are the compatibility contract: the original Go client decodes them.
 */

/** ExitCode while a build is pending or when no container ran. */
export const NO_EXIT_CODE = -999;
/** Duration when it was not computed (pending, coalesced, server error): Go's -1s. */
export const NO_DURATION_NS = -1_000_000_000;

export interface BuildInfo {
  Params: Record<string, string> | null;
  Group: string;
  Path: string;
  Cached: boolean;
  Coalesced: boolean;
  Incremental: boolean;
  ExitCode: number;
  ErrBuild: string;
  ContainerStdouterr?: string;
  ContainerStderr?: string;
  TransportMethod: string;
  StartedAt: string;
  Duration: number;
  URL: string;
}

/** Copies `info` with its fields in the original's order, dropping empty log fields. */
export function orderedBuildInfo(info: BuildInfo, withLogs = true): BuildInfo {
  const out: BuildInfo = {
    Params: info.Params,
    Group: info.Group,
    Path: info.Path,
    Cached: info.Cached,
    Coalesced: info.Coalesced,
    Incremental: info.Incremental,
    ExitCode: info.ExitCode,
    ErrBuild: info.ErrBuild,
    TransportMethod: info.TransportMethod,
    StartedAt: info.StartedAt,
    Duration: info.Duration,
    URL: info.URL,
  };
  if (!withLogs) return out;
  // Object key order is insertion order: rebuild with the log fields in their slot.
  const { TransportMethod, StartedAt, Duration, URL, ...head } = out;
  const logs: Partial<BuildInfo> = {};
  if (info.ContainerStdouterr) logs.ContainerStdouterr = info.ContainerStdouterr;
  if (info.ContainerStderr) logs.ContainerStderr = info.ContainerStderr;
  return { ...head, ...logs, TransportMethod, StartedAt, Duration, URL };
}

/** The record stored on disk: never the log fields. */
export function storedBuildInfo(info: BuildInfo): BuildInfo {
  return orderedBuildInfo(info, false);
}

/**
 * Go's RFC3339Nano for a UTC instant: `2019-07-02T10:11:12.12Z`, trailing fraction zeros trimmed
 * and the fraction left out when it is zero.
 */
export function formatRfc3339(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.replace(/\.(\d*?)0*Z$/, (_m, digits: string) => (digits ? `.${digits}Z` : 'Z'));
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * Go layout `Mon, 02 Jan 2006 15:04:05` in the offset of an RFC 3339 time, without the zone.
 * Returns the input unchanged when it does not parse.
 */
export function formatIndexTime(rfc3339: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/.exec(rfc3339);
  if (!match) return rfc3339;
  const [, y, mo, d, h, mi, s] = match as unknown as string[];
  // The wall clock is the one written in the string; the weekday follows from the date alone.
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d))).getUTCDay();
  return `${DAYS[day]}, ${d} ${MONTHS[Number(mo) - 1]} ${y} ${h}:${mi}:${s}`;
}

/** Milliseconds to Go nanoseconds, truncated to whole milliseconds. */
export function durationNs(ms: number): number {
  return Math.trunc(ms) * 1_000_000;
}

const NAME = /^[A-Za-z0-9_@][A-Za-z0-9._@-]{0,127}$/;

/** Project names, groups and param keys: no path separators, no leading dot. */
export function isValidName(value: string): boolean {
  return NAME.test(value);
}

/** `job/<project>/<id>`, the URL field (no leading slash). */
export function jobUrl(project: string, id: string): string {
  return `job/${project}/${id}`;
}
