/**
 * The bundled web UI (spec §3.10): plain pages and scripts served from memory, no external URL.
 * Everything from the server is inserted with `textContent`, never as HTML, so build output such
 * as `<img onerror=…>` shows as text.
 */

export interface Asset {
  type: string;
  body: string;
}

const STYLE = `body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
pre{background:#f4f4f4;padding:1em;white-space:pre-wrap}`;

const INDEX_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>The mistry jobs</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><h1>The mistry jobs</h1>
<table><thead><tr><th>ID</th><th>Project</th><th>Started At</th><th>State</th></tr></thead>
<tbody id="jobs"><tr><td colspan="4">No jobs...</td></tr></tbody></table>
<script src="/static/index.js"></script></body></html>
`;

const INDEX_JS = `'use strict';
function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.appendChild(td);
  return td;
}
async function refresh() {
  try {
    const res = await fetch('/index?limit=200');
    const jobs = await res.json();
    const body = document.getElementById('jobs');
    body.textContent = '';
    if (jobs.length === 0) {
      cell(body.insertRow(), 'No jobs...').colSpan = 4;
      return;
    }
    for (const job of jobs) {
      const row = body.insertRow();
      const td = cell(row, '');
      const link = document.createElement('a');
      link.href = '/job/' + encodeURIComponent(job.project) + '/' + encodeURIComponent(job.id);
      link.textContent = job.id;
      td.appendChild(link);
      cell(row, job.project);
      cell(row, job.startedAt);
      cell(row, job.state);
    }
  } catch (err) { /* the next refresh tries again */ }
}
refresh();
setInterval(refresh, 3000);
`;

const JOB_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Job Logs</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><h1>Job <span id="id"></span></h1>
<table id="details"><tbody></tbody></table>
<h2>Log</h2><pre id="log"></pre><p id="tail"></p>
<script src="/static/job.js"></script></body></html>
`;

const JOB_JS = `'use strict';
const parts = location.pathname.split('/');
const project = decodeURIComponent(parts[2] || ''), id = decodeURIComponent(parts[3] || '');
const jobPath = encodeURIComponent(project) + '/' + encodeURIComponent(id);
const logEl = document.getElementById('log');
let rendered = 0;
function row(label, value) {
  const tr = document.querySelector('#details tbody').insertRow();
  const th = document.createElement('th'); th.textContent = label; tr.appendChild(th);
  const td = tr.insertCell(); td.textContent = value;
}
async function load() {
  const res = await fetch('/job/' + jobPath, { headers: { Accept: 'application/json' } });
  if (res.status !== 200) {
    // Still queued (not on disk yet) or a transient error: look again shortly.
    document.getElementById('tail').textContent =
      res.status === 404 ? 'Waiting for the job to start...' : 'Loading failed, retrying...';
    setTimeout(load, 1000);
    return;
  }
  document.getElementById('tail').textContent = '';
  const job = await res.json();
  const info = job.BuildInfo;
  document.getElementById('id').textContent = job.ID;
  document.querySelector('#details tbody').textContent = '';
  const rows = [
    ['Project', job.Project],
    ['Group', job.Group],
    ['State', job.State],
    ['Started At', job.StartedAt],
    ['Duration', info.Duration < 0 ? '' : (info.Duration / 1e9).toFixed(3) + 's'],
    ['Path', info.Path],
    ['Params', JSON.stringify(job.Params)],
    ['Cached', String(info.Cached)],
    ['Coalesced', String(info.Coalesced)],
    ['Incremental', String(info.Incremental)],
    ['ExitCode', String(info.ExitCode)],
    ['Transport method', info.TransportMethod],
    ['Error', info.ErrBuild],
  ];
  for (const [label, value] of rows) row(label, value);
  const log = info.ContainerStdouterr || '';
  logEl.textContent = log;
  rendered = new TextEncoder().encode(log).length;
  if (job.State === 'pending') follow();
}
function follow() {
  const source = new EventSource('/log/' + jobPath + '?from=' + rendered);
  source.onmessage = (event) => {
    logEl.appendChild(document.createTextNode(event.data + '\\n'));
  };
  source.addEventListener('end', () => {
    source.close();
    load();
  });
  source.onerror = () => {
    source.close();
    document.getElementById('tail').textContent = 'Web tail failed.';
  };
}
load();
`;

const MANIFEST = JSON.stringify({
  name: 'mistry',
  short_name: 'mistry',
  start_url: '/',
  display: 'browser',
});

const ASSETS: Record<string, Asset> = {
  '/': { type: 'text/html; charset=utf-8', body: INDEX_HTML },
  '/index.html': { type: 'text/html; charset=utf-8', body: INDEX_HTML },
  '/job.html': { type: 'text/html; charset=utf-8', body: JOB_HTML },
  '/static/style.css': { type: 'text/css; charset=utf-8', body: STYLE },
  '/static/index.js': { type: 'text/javascript; charset=utf-8', body: INDEX_JS },
  '/static/job.js': { type: 'text/javascript; charset=utf-8', body: JOB_JS },
  '/manifest.json': { type: 'application/json', body: MANIFEST },
};

export function renderAsset(path: string): Asset | undefined {
  return ASSETS[path];
}
