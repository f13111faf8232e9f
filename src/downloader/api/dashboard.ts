/**
 * The operators' dashboard, embedded in the executable: plain DOM and no outside request (the
 * original loaded React from a CDN). It polls every host in `window.Hosts` (from `/hosts.js`
 * when configured, else the page's own origin) every 5 s.
 */

const SCRIPT = String.raw`
(function () {
  var hosts = (window.Hosts && window.Hosts.length) ? window.Hosts : [window.location.origin];
  var lastOk = Date.now();
  function el(tag, text) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function base(h) { return h.replace(/\/+$/, ''); }
  function fetchJson(url) {
    return fetch(url, { cache: 'no-store' }).then(function (r) {
      if (r.status === 404) return null;
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    });
  }
  function renderAggregations(rows) {
    var box = document.getElementById('js-aggregations');
    box.replaceChildren();
    if (rows.length === 0) { box.appendChild(el('p', 'No running aggregations :(')); return; }
    rows.sort(function (a, b) { return b.size - a.size; });
    var table = el('table'); var head = el('tr');
    ['Aggregation', 'Host', 'Pending Downloads'].forEach(function (h) {
      head.appendChild(el('th', h));
    });
    table.appendChild(head);
    rows.forEach(function (r) {
      var tr = el('tr');
      tr.appendChild(el('td', r.name.replace(/^jobs:/, '')));
      tr.appendChild(el('td', r.host));
      tr.appendChild(el('td', r.size));
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function renderStats(id, perHost) {
    var box = document.getElementById(id);
    box.replaceChildren();
    var names = Object.keys(perHost).filter(function (h) { return perHost[h]; });
    if (names.length === 0) { box.appendChild(el('p', 'No Stats found :(')); return; }
    var keys = {};
    names.forEach(function (h) {
      Object.keys(perHost[h]).forEach(function (k) { keys[k] = true; });
    });
    var table = el('table'); var head = el('tr'); head.appendChild(el('th', 'Key'));
    names.forEach(function (h) { head.appendChild(el('th', h)); });
    table.appendChild(head);
    Object.keys(keys).sort().forEach(function (k) {
      var tr = el('tr'); tr.appendChild(el('td', k));
      names.forEach(function (h) {
        var v = perHost[h][k];
        tr.appendChild(el('td', v === undefined ? '' : v));
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function liveness() {
    var box = document.getElementById('js-liveness');
    var stale = Date.now() - lastOk > 6000;
    box.className = stale ? 'callout red' : 'callout green';
    var silentS = Math.round((Date.now() - lastOk) / 1000);
    box.textContent = stale ? 'Stats are stale: no successful fetch for ' + silentS + ' s' : 'Live';
  }
  function poll() {
    var aggregations = []; var proc = {}; var notif = {};
    var jobs = hosts.map(function (h) {
      return Promise.all([
        fetchJson(base(h) + '/dashboard/aggregations'),
        fetchJson(base(h) + '/stats/processor'),
        fetchJson(base(h) + '/stats/notifier'),
      ]).then(function (res) {
        (res[0] || []).forEach(function (r) {
          aggregations.push({ name: r.name, size: r.size, host: h });
        });
        proc[h] = res[1]; notif[h] = res[2];
        lastOk = Date.now();
      });
    });
    Promise.allSettled(jobs).then(function () {
      renderAggregations(aggregations);
      renderStats('processor-stats', proc);
      renderStats('notifier-stats', notif);
      liveness();
    });
  }
  poll();
  setInterval(poll, 5000);
  setInterval(liveness, 1000);
})();
`;

const STYLE = `
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
.callout { padding: 0.6em 1em; border-radius: 4px; margin-bottom: 1em; }
.green { background: #d4f4d4; } .red { background: #f8c8c8; }
`;

/** The page served at `/`. `withHosts` adds the `/hosts.js` script tag. */
export function dashboardHtml(withHosts: boolean): string {
  const hosts = withHosts ? '<script src="/hosts.js"></script>\n' : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rate Limiting Downloader</title>
<style>${STYLE}</style></head>
<body>
<h1>Downloader</h1>
<div id="js-liveness" class="callout green">Live</div>
<h2>Aggregations</h2><div id="js-aggregations"></div>
<h2>processor Stats</h2><div id="processor-stats"></div>
<h2>notifier Stats</h2><div id="notifier-stats"></div>
${hosts}<script>${SCRIPT}</script>
</body></html>
`;
}

export function hostsScript(hosts: string[]): string {
  return `window.Hosts = ${JSON.stringify(hosts)};\n`;
}
