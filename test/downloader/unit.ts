// Unit tests of the downloader's pure logic (acceptance S7): Go globs and URL errors, the Job{…}
// rendering, MIME rules, the watermark, error classification helpers, payload and stats shapes.
import t from 'tap';
import { FILES } from '../helpers/downloader.js';
import { formatStats } from '../../src/downloader/api/handlers.js';
import { cleanPath, lastSegment } from '../../src/downloader/api/http-util.js';
import { globMatch, isValidGlob } from '../../src/downloader/glob.js';
import { goQuote, requestUriError } from '../../src/downloader/go-url.js';
import { formatJob, newJobId, validateJob, type JobSpec } from '../../src/downloader/job.js';
import { DiskWatermark } from '../../src/downloader/processor/disk.js';
import {
  DownloadError,
  internalDelayMs,
  parseRetryAfter,
  retryDelayMs,
} from '../../src/downloader/processor/errors.js';
import { imageSize } from '../../src/downloader/processor/image-size.js';
import { detectMime, mimeMismatch } from '../../src/downloader/processor/mime.js';
import { SsrfGuard } from '../../src/downloader/processor/ssrf.js';
import { buildPayload, joinDownloadUrl } from '../../src/downloader/notifier/payload.js';
import { decodeRecord, initialFields } from '../../src/downloader/record.js';

t.test('Go filepath.Match', async (t) => {
  const cases: [string, string, boolean][] = [
    ['image/*', 'image/png', true],
    ['*/*', 'image/png', true],
    ['*', 'image/png', false],
    ['image/p?g', 'image/png', true],
    ['image/[a-p]ng', 'image/png', true],
    ['image/[^p]ng', 'image/png', false],
    ['image/\\*', 'image/*', true],
    ['', '', true],
    ['', 'image/png', false],
    ['image/*', 'image/', true],
    ['*png', 'image/png', false],
    ['text/plain', 'text/plain', true],
  ];
  for (const [pattern, name, want] of cases) {
    t.equal(globMatch(pattern, name), want, `${pattern} ~ ${name}`);
  }
  const validity: [string, boolean][] = [
    ['[]a]', false],
    ['\\', false],
    ['image/[', false],
    ['image/[a-]', false],
    ['', true],
    ['image/*', true],
    ['!image/vnd.adobe.photoshop', true],
    ['[^a]', true],
  ];
  for (const [pattern, want] of validity) t.equal(isValidGlob(pattern), want, `valid(${pattern})`);
});

t.test('Go url.ParseRequestURI errors', async (t) => {
  const cases: [string, string | undefined][] = [
    ['http://example.com/a.png', undefined],
    ['ftp://example.com/x', undefined],
    ['mailto:someone', undefined],
    ['/bare/path', undefined],
    ['*', undefined],
    ['', 'parse "": empty url'],
    ['foo', 'parse "foo": invalid URI for request'],
    ['example.com/x', 'parse "example.com/x": invalid URI for request'],
    [':foo', 'parse ":foo": missing protocol scheme'],
    ['http://h:x/', 'parse "http://h:x/": invalid port ":x" after host'],
    ['http://h/%zz', 'parse "http://h/%zz": invalid URL escape "%zz"'],
    ['http://h/a b', undefined],
    ['http://h\t/', 'parse "http://h\\t/": net/url: invalid control character in URL'],
    ['http://[::1/', `parse "http://[::1/": missing ']' in host`],
    ['http://a b/', 'parse "http://a b/": invalid character " " in host name'],
  ];
  for (const [input, want] of cases) t.equal(requestUriError(input), want, JSON.stringify(input));
  t.equal(goQuote('a"b\\c\u0001'), '"a\\"b\\\\c\\x01"');
});

const SPEC: JobSpec = {
  id: 'AbCdEfGhIjKlMn',
  aggr_id: 'shop',
  url: 'http://x/a.png',
  callback_type: 'http',
  callback_dst: 'http://cb/x',
  extra: '',
  mime_type: '',
  max_retries: null,
  extract_image_size: true,
  download_timeout: 4,
  request_headers: { b: '2', a: '1' },
  s3_bucket: '',
  s3_region: '',
};

t.test('the Job{…} rendering', async (t) => {
  t.equal(
    formatJob(SPEC, 'http://files/base', '10x10'),
    'Job{ID:AbCdEfGhIjKlMn, Aggr:shop, URL:http://x/a.png, ExtractImageSize:true, ImageSize: 10x10, ' +
      'callback_url:, callback_type:http, callback_dst:http://cb/x, Timeout:4, RequestHeaders:map[a:1 b:2], ' +
      'DownloadURL:http://files/base}',
  );
  t.match(newJobId(), /^[A-Za-z0-9_-]{14}$/);
  const ids = new Set(Array.from({ length: 1000 }, newJobId));
  t.equal(ids.size, 1000, 'ids do not repeat');
  const job = validateJob({
    url: '/x',
    aggr_id: 'a',
    callback_url: 'http://c',
    max_retries: 2.9,
    user_agent: 'gone',
  });
  t.equal(job.max_retries, 2, 'max_retries truncates');
  t.equal(job.callback_url, 'http://c');
  t.notOk('user_agent' in job, 'the retired user_agent is dropped');
});

t.test('MIME detection and rules', async (t) => {
  t.equal(await detectMime(Buffer.alloc(0)), 'application/x-empty');
  t.equal(await detectMime(Buffer.from('hello, wörld\n')), 'text/plain');
  t.equal(await detectMime(Buffer.from([0, 1, 2, 3, 0xff])), 'application/octet-stream');
  t.equal(await detectMime(FILES.png), 'image/png');
  t.equal(await detectMime(FILES.jpeg), 'image/jpeg');
  t.equal(await detectMime(FILES.pdf), 'application/pdf');
  t.equal(await detectMime(FILES.bmp), 'image/bmp');
  const rules: [string, string, string | undefined][] = [
    ['image/*', 'image/png', undefined],
    ['image/jpeg', 'image/png', 'Expected mime-type to be (image/jpeg), found (image/png)'],
    [
      '!image/vnd.adobe.photoshop,image/*',
      'image/vnd.adobe.photoshop',
      'Expected mime-type not to be (image/vnd.adobe.photoshop) found - (image/vnd.adobe.photoshop)',
    ],
    ['!image/vnd.adobe.photoshop, image/*', 'image/png', undefined],
    [
      'image/jpeg,image/png',
      'image/png',
      'Expected mime-type to be (image/jpeg), found (image/png)',
    ],
  ];
  for (const [pattern, mime, want] of rules)
    t.equal(mimeMismatch(pattern, mime), want, `${pattern} vs ${mime}`);
});

t.test('image sizes', async (t) => {
  t.equal(imageSize('image/png', FILES.png), '10x10');
  t.equal(imageSize('image/jpeg', FILES.jpeg), '32x16');
  t.equal(imageSize('image/gif', Buffer.from('GIF89a\x05\x00\x07\x00', 'latin1')), '5x7');
  t.equal(imageSize('application/pdf', FILES.pdf), '');
  t.throws(() => imageSize('image/png', Buffer.from('\x89PNG')));
});

t.test('the disk watermark', async (t) => {
  const mark = new DiskWatermark(95, 90);
  const steps: [number, 'paused' | 'resumed' | undefined, boolean][] = [
    [50, undefined, false],
    [95, undefined, false],
    [96, 'paused', true],
    [92, undefined, true],
    [90, 'resumed', false],
    [99, 'paused', true],
  ];
  for (const [usedPct, change, paused] of steps) {
    t.equal(mark.update({ blocks: 100, bfree: 100 - usedPct }), change, `${usedPct}%`);
    t.equal(mark.paused, paused, `${usedPct}% paused`);
  }
});

t.test('retry timing and error strings', async (t) => {
  t.equal(retryDelayMs(1, 120_000), 120_000);
  t.equal(retryDelayMs(2, 120_000), 240_000);
  t.equal(retryDelayMs(1, 200, 2000), 2000, 'never before Retry-After');
  t.equal(internalDelayMs(1, 10_000), 10_000);
  t.equal(internalDelayMs(3, 10_000), 40_000);
  t.equal(internalDelayMs(30, 10_000), 600_000, 'capped at 10 min');
  t.equal(parseRetryAfter('2', 3600), 2000);
  t.equal(parseRetryAfter('99999', 3600), 3_600_000, 'capped');
  t.equal(parseRetryAfter(new Date(10_000).toUTCString(), 3600, 5000), 5000, 'HTTP date');
  t.equal(parseRetryAfter('soon', 3600), undefined);
  const err = new DownloadError(
    'processing response',
    'Received status code 503 Service Unavailable',
    {
      retriable: true,
      kind: 'status',
    },
  );
  t.equal(
    err.message,
    'Error while processing response, Received status code 503 Service Unavailable, retriable: true, internal: false',
  );
});

t.test('the SSRF guard address rules', async (t) => {
  const guard = new SsrfGuard([]);
  for (const address of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '240.0.0.1',
    '::1',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '::',
  ]) {
    t.ok(guard.refuses(address), `${address} refused`);
  }
  for (const address of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888'])
    t.notOk(guard.refuses(address), `${address} allowed`);
  const allowing = new SsrfGuard(['127.0.0.0/8', '10.0.0.0/16']);
  t.notOk(allowing.refuses('127.0.0.1'));
  t.notOk(allowing.refuses('10.0.5.5'));
  t.ok(allowing.refuses('10.1.0.1'));
  t.throws(() => new SsrfGuard(['nonsense']));
});

t.test('payloads, URLs and stats formatting', async (t) => {
  t.equal(
    joinDownloadUrl('http://localhost/foo', '6QEywYsd0jrKAg'),
    'http://localhost/foo/6QE/6QEywYsd0jrKAg',
  );
  t.equal(joinDownloadUrl('http://localhost/foo/', 'abcdef'), 'http://localhost/foo/abc/abcdef');
  t.equal(joinDownloadUrl('http://h/foo?sig=1', 'abcdef'), 'http://h/foo/abc/abcdef?sig=1');
  const record = decodeRecord(initialFields({ ...SPEC, extra: 'x' }, 'http://files/base', 1));
  t.ok(record);
  if (!record) return;
  record.downloadState = 'Failed';
  record.downloadMeta = 'Error while …';
  record.responseCode = 404;
  t.equal(
    buildPayload(record),
    '{"success":false,"error":"Error while …","extra":"x","image_size":"","resource_url":"http://x/a.png",' +
      '"download_url":"","job_id":"AbCdEfGhIjKlMn","response_code":404,"delivered":true,"delivery_error":"","sha256":""}',
  );
  t.equal(
    formatStats({ workers: 0, alive: 1, 'download.response.200': 3 }),
    '{"alive": 1, "download.response.200": 3, "workers": 0}',
  );
  t.equal(cleanPath('//hb'), '/hb');
  t.equal(cleanPath('/stats/./x/../processor'), '/stats/processor');
  t.equal(cleanPath('/retry/'), '/retry/');
  t.equal(lastSegment('/retry/'), 'retry');
  t.equal(lastSegment('/retry/abc'), 'abc');
});
