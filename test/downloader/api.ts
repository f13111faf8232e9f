// The api's HTTP contract (spec §3.3–3.6, acceptance A1, A2, A4, A5): exact statuses, bodies and
// headers, against the built executable and the real Redis.
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { post, setupDownloader, submit } from '../helpers/downloader.js';
import { request } from '../helpers/net.js';

const URL_OK = 'http://127.0.0.1:1/x';
const base = { url: URL_OK, aggr_id: 'a', aggr_limit: 2, callback_url: 'http://127.0.0.1:1/cb' };
const withField = (field: Record<string, unknown>): string => JSON.stringify({ ...base, ...field });
const without = (key: string, field: Record<string, unknown> = {}): string => {
  const copy: Record<string, unknown> = { ...base, ...field };
  delete copy[key];
  return JSON.stringify(copy);
};

// [label, raw body, where (Job | Aggregation), message]
const REJECTED: [string, string, 'Job' | 'Aggregation', string][] = [
  ['not JSON', 'meh', 'Job', "invalid character 'm' looking for beginning of value"],
  ['empty body', '', 'Job', 'unexpected end of JSON input'],
  [
    'array',
    '[1]',
    'Job',
    'json: cannot unmarshal array into Go value of type map[string]interface {}',
  ],
  [
    'string',
    '"x"',
    'Job',
    'json: cannot unmarshal string into Go value of type map[string]interface {}',
  ],
  [
    'number',
    '4',
    'Job',
    'json: cannot unmarshal number into Go value of type map[string]interface {}',
  ],
  [
    'bool',
    'true',
    'Job',
    'json: cannot unmarshal bool into Go value of type map[string]interface {}',
  ],
  ['null acts as {}', 'null', 'Job', 'URL must be a string'],
  ['unknown key only', '{"goo":"bar"}', 'Job', 'URL must be a string'],
  ['url number', withField({ url: 4 }), 'Job', 'URL must be a string'],
  ['url empty', withField({ url: '' }), 'Job', 'Could not parse URL: parse "": empty url'],
  [
    'url relative',
    withField({ url: 'foo' }),
    'Job',
    'Could not parse URL: parse "foo": invalid URI for request',
  ],
  [
    'url bad port',
    withField({ url: 'http://h:x/' }),
    'Job',
    'Could not parse URL: parse "http://h:x/": invalid port ":x" after host',
  ],
  [
    'url bad escape',
    withField({ url: 'http://h/%zz' }),
    'Job',
    'Could not parse URL: parse "http://h/%zz": invalid URL escape "%zz"',
  ],
  [
    'url control char',
    withField({ url: 'http://h/\u0001' }),
    'Job',
    'Could not parse URL: parse "http://h/\\x01": net/url: invalid control character in URL',
  ],
  ['aggr_id missing', without('aggr_id'), 'Job', 'aggr_id must be a string'],
  ['aggr_id empty', withField({ aggr_id: '' }), 'Job', 'aggr_id cannot be empty'],
  [
    'region without bucket',
    withField({ s3_region: 'eu' }),
    'Job',
    's3_region provided without an s3_bucket',
  ],
  [
    'bucket without region',
    withField({ s3_bucket: 'b' }),
    'Job',
    's3_bucket provided without an s3_region',
  ],
  [
    'callback_url empty',
    withField({ callback_url: '' }),
    'Job',
    'Could not parse callback URL: parse "": empty url',
  ],
  ['no callback at all', without('callback_url'), 'Job', 'callback_type must be a string'],
  [
    'callback_dst missing',
    without('callback_url', { callback_type: 'http' }),
    'Job',
    'callback_dst must be a string',
  ],
  [
    'callback_type empty',
    without('callback_url', { callback_type: '', callback_dst: 'x' }),
    'Job',
    'You need to provide both callback_type ("") and callback_dst ("x")',
  ],
  [
    'callback_dst not a URI',
    without('callback_url', { callback_type: 'http', callback_dst: 'httpfoo' }),
    'Job',
    'Could not parse URL: parse "httpfoo": invalid URI for request',
  ],
  ['mime_type number', withField({ mime_type: 5 }), 'Job', 'MimeType pattern must be a string'],
  [
    'mime_type malformed class',
    withField({ mime_type: 'image/*, []a]' }),
    'Job',
    'Invalid MimeType Pattern, "[]a]"',
  ],
  [
    'mime_type lone backslash',
    withField({ mime_type: '!\\' }),
    'Job',
    'Invalid MimeType Pattern, "!\\\\"',
  ],
  [
    'max_retries string',
    withField({ max_retries: '3' }),
    'Job',
    'Max retries must be a number, was: string',
  ],
  [
    'max_retries null',
    withField({ max_retries: null }),
    'Job',
    'Max retries must be a number, was: <nil>',
  ],
  [
    'max_retries object',
    withField({ max_retries: {} }),
    'Job',
    'Max retries must be a number, was: map[string]interface {}',
  ],
  [
    'max_retries array',
    withField({ max_retries: [] }),
    'Job',
    'Max retries must be a number, was: []interface {}',
  ],
  [
    'max_retries bool',
    withField({ max_retries: true }),
    'Job',
    'Max retries must be a number, was: bool',
  ],
  [
    'max_retries negative',
    withField({ max_retries: -1 }),
    'Job',
    'Max retries must not be negative',
  ],
  [
    'extract_image_size string',
    withField({ extract_image_size: 'yes' }),
    'Job',
    'ExtractImageSize must be a boolean',
  ],
  [
    'download_timeout null',
    withField({ download_timeout: null }),
    'Job',
    'Download timeout must be a number',
  ],
  [
    'download_timeout "4"',
    withField({ download_timeout: '4' }),
    'Job',
    'Download timeout must be a number',
  ],
  [
    'download_timeout -2',
    withField({ download_timeout: -2 }),
    'Job',
    'Download timeout must be greater than 0',
  ],
  [
    'download_timeout 0.5 truncates to 0',
    withField({ download_timeout: 0.5 }),
    'Job',
    'Download timeout must be greater than 0',
  ],
  [
    'request_headers null',
    withField({ request_headers: null }),
    'Job',
    'request_headers must be a dictionary',
  ],
  [
    'request_headers number value',
    withField({ request_headers: { a: 1 } }),
    'Job',
    'Values of request headers keys must be either strings or ints.Given value is %!s(float64=1)',
  ],
  [
    'request_headers bool value',
    withField({ request_headers: { ok: 'x', a: true } }),
    'Job',
    'Values of request headers keys must be either strings or ints.Given value is %!s(bool=true)',
  ],
  [
    'request_headers null value',
    withField({ request_headers: { a: null } }),
    'Job',
    'Values of request headers keys must be either strings or ints.Given value is %!s(<nil>)',
  ],
  [
    'aggr_limit missing',
    without('aggr_limit'),
    'Aggregation',
    'Aggregation limit must be a number',
  ],
  [
    'aggr_limit "4"',
    withField({ aggr_limit: '4' }),
    'Aggregation',
    'Aggregation limit must be a number',
  ],
  [
    'aggr_limit 0',
    withField({ aggr_limit: 0 }),
    'Aggregation',
    'Aggregation limit must be greater than 0',
  ],
  [
    'aggr_proxy null',
    withField({ aggr_proxy: null }),
    'Aggregation',
    'Aggregation proxy must be a string',
  ],
  [
    'aggr_proxy relative',
    withField({ aggr_proxy: 'proxy' }),
    'Aggregation',
    'Aggregation proxy must be a valid URI: parse "proxy": invalid URI for request',
  ],
  [
    'expiresAt number',
    withField({ expiresAt: 5 }),
    'Aggregation',
    'Aggregation expiresAt must be a string',
  ],
];

/** A GET with the path sent verbatim (fetch would clean `.` and `//` itself). */
function rawGet(
  api: string,
  path: string,
): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${api}/`, { path, timeout: 5000 }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, location: res.headers.location });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the api contract', async (t) => {
  const dl = setupDownloader(t, { api: { max_body_bytes: 4096 } });
  const { url: api } = await dl.startApi();

  t.test('A1: every rejected body gets its exact 400', async (t) => {
    for (const [label, body, where, message] of REJECTED) {
      const answer = await post(api, body);
      t.equal(answer.status, 400, label, { body });
      t.equal(answer.text, `Error unmarshalling body '${body}' to ${where}: ${message}\n`, label);
      t.equal(answer.headers.get('content-type'), 'text/plain; charset=utf-8', label);
      t.equal(answer.headers.get('x-content-type-options'), 'nosniff', label);
    }
    t.same(await dl.redis.keys(`${dl.prefix}job:*`), [], 'nothing was written');
  });

  t.test('A1: method and body size', async (t) => {
    const get = await request(`${api}/download`);
    t.equal(get.status, 405);
    t.equal(get.text, 'Invalid request method\n');
    const big = await post(api, JSON.stringify({ ...base, extra: 'x'.repeat(5000) }));
    t.equal(big.status, 400);
    t.equal(big.text, 'Error reading request body: http: request body too large\n');
  });

  t.test('A2: a valid POST is 201 with a 14-character id as text/plain', async (t) => {
    const answer = await post(api, { ...base, unknown_key: 1, user_agent: 'x', aggr_proxy: '' });
    t.equal(answer.status, 201);
    t.match(answer.text, /^\{"id":"[A-Za-z0-9_-]{14}"\}$/);
    t.equal(answer.headers.get('content-type'), 'text/plain; charset=utf-8');
    const id = (JSON.parse(answer.text) as { id: string }).id;
    t.equal(await dl.redis.hget(`${dl.prefix}job:${id}`, 'state'), 'Pending');
  });

  t.test('A4: /retry answers', async (t) => {
    const id = await submit(api, base);
    const get = await request(`${api}/retry/${id}`);
    t.equal(get.status, 405);
    t.equal(get.text, 'Invalid request method\n');
    const unknown = await post(api, '', '/retry/nosuchjob');
    t.equal(unknown.status, 400);
    t.equal(unknown.text, 'Error fetching nosuchjob from Redis: Not Found\n');
    const bare = await post(api, '', '/retry/');
    t.equal(bare.text, 'Error fetching retry from Redis: Not Found\n');
    const pending = await post(api, '', `/retry/${id}`);
    t.equal(pending.status, 400);
    t.equal(
      pending.text,
      `Error with callback state of the job Job{ID:${id}, Aggr:a, URL:${URL_OK}, ExtractImageSize:false, ImageSize: , ` +
        `callback_url:http://127.0.0.1:1/cb, callback_type:, callback_dst:, Timeout:0, RequestHeaders:map[], ` +
        `DownloadURL:${dl.downloadUrl}}: \n`,
    );
  });

  t.test('A5: /hb, /stats, /dashboard/aggregations and routing', async (t) => {
    const hbFile = join(t.testdir({}), 'disabled');
    dl.rewrite({ api: { heartbeat_path: hbFile } });
    const { url: api2 } = await dl.startApi();
    const ok = await request(`${api2}/hb`);
    t.equal(ok.status, 200);
    t.equal(ok.text, 'OK');
    writeFileSync(hbFile, '');
    const off = await request(`${api2}/hb`);
    t.equal(off.status, 503);
    t.equal(off.text, `Service disabled, '${hbFile}' exists!\n`);

    const stats = await request(`${api}/stats/processor`);
    t.equal(stats.status, 404);
    t.equal(stats.text, 'Could not find stats for entity processor\n');
    const other = await request(`${api}/stats/foo?x=1`);
    t.equal(other.text, 'Could not find stats for entity foo?x=1\n');

    const aggrs = await request(`${api}/dashboard/aggregations`);
    t.equal(aggrs.status, 200);
    t.equal(aggrs.headers.get('access-control-allow-origin'), '*');
    t.same(JSON.parse(aggrs.text), [{ name: 'jobs:a', size: 2 }], 'the jobs queued above');

    const notFound = await request(`${api}/download/`);
    t.equal(notFound.status, 404);
    t.equal(notFound.text, '404 page not found\n');
    for (const [from, to] of [
      ['/stats', '/stats/'],
      ['/retry', '/retry/'],
      ['//hb', '/hb'],
      ['/stats/./processor', '/stats/processor'],
    ]) {
      const moved = await rawGet(api, from);
      t.equal(moved.status, 301, from);
      t.equal(moved.location, to, from);
    }
    const page = await request(`${api}/`);
    t.equal(page.status, 200);
    t.match(page.text, /<title>Rate Limiting Downloader<\/title>/);
    const metrics = await request(`${api}/metrics`);
    for (const name of [
      'downloader_build_info',
      'downloader_redis_errors_total',
      'downloader_api_http_requests_total',
      'downloader_api_http_request_duration_seconds',
      'downloader_api_jobs_enqueued_total',
      'downloader_api_aggregations_created_total',
      'downloader_queue_jobs{',
    ]) {
      t.match(metrics.text, name, name);
    }
    t.match(metrics.text, /downloader_queue_jobs\{queue="download_waiting"[^}]*\} 2/);
  });
});

t.test('A2: with Redis gone, POST /download is a 500 and nothing is queued', async (t) => {
  // A loopback forwarder in front of Redis that the test can cut.
  const sockets = new Set<Socket>();
  const forwarder = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(6379, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
  });
  await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
  const port = (forwarder.address() as AddressInfo).port;
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    forwarder.close();
  });
  const dl = setupDownloader(t, { redis: { addr: `127.0.0.1:${port}` } });
  const { url: api } = await dl.startApi();
  t.equal((await post(api, base)).status, 201, 'accepted while Redis is reachable');
  forwarder.close();
  for (const s of sockets) s.destroy();
  const answer = await post(api, base);
  t.equal(answer.status, 500);
  t.match(answer.text, /^Error fetching Job\{ID:, Aggr:a, .*\} from Redis: .+\n$/);
  t.equal((await dl.redis.keys(`${dl.prefix}job:*`)).length, 1, 'only the first job exists');
});
