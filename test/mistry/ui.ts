// The web UI in headless Chromium (spec §3.10, §7.2 web UI): the job list, a ready job page with
// escaped output, a pending page following the live log until `event: end`, and no request that
// leaves the server.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { postJob, project, sandbox, startServer } from '../helpers/mistry.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

t.test(
  'web UI',
  { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` },
  async (t) => {
    const box = await sandbox(t);
    await project(box, 'xss', { script: 'echo \'<img src=x onerror="window.__xss=1">\'' });
    await project(box, 'chatty', {
      script: 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done',
    });
    const { base } = await startServer(t, box);
    const xss = await postJob(base, { Project: 'xss' });
    t.equal(xss.status, 201);
    const xssId = String(xss.json?.URL).split('/')[2];

    const profile = await mkdtemp(join(tmpdir(), 'mst-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    t.teardown(async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    });
    const outside: string[] = [];
    context.on('request', (request) => {
      if (!request.url().startsWith(base)) outside.push(request.url());
    });
    const page = await context.newPage();

    await page.goto(`${base}/`);
    t.equal(await page.title(), 'The mistry jobs');
    await page.waitForSelector(`a[href="/job/xss/${xssId}"]`, { timeout: 10_000 });
    const row = await page.textContent('#jobs');
    t.match(row, 'xss');
    t.match(row, 'ready');

    await page.goto(`${base}/job/xss/${xssId}`);
    t.equal(await page.title(), 'Job Logs');
    await page.waitForFunction(
      "(document.getElementById('log')?.textContent ?? '').includes('onerror')",
    );
    t.match(
      await page.textContent('#log'),
      '<img src=x onerror="window.__xss=1">',
      'markup shown as text',
    );
    t.equal(await page.locator('#log img').count(), 0, 'no element made from the log');
    t.equal(await page.evaluate('window.__xss'), undefined, 'handler never ran');
    const details = await page.textContent('#details');
    t.match(details, 'ExitCode0');
    t.match(details, 'Transport methodrsync');

    const accepted = await postJob(base, { Project: 'chatty' }, '?async', {
      Accept: 'application/json',
    });
    const chattyId = String(accepted.json?.id);
    await page.goto(`${base}/job/chatty/${chattyId}`);
    await page.waitForFunction(
      "(document.getElementById('log')?.textContent ?? '').includes('line 2')",
      undefined,
      {
        timeout: 20_000,
      },
    );
    const early = await page.textContent('#log');
    t.notMatch(early, 'line 6', 'lines arrive while the build runs');
    await page.waitForFunction(
      "(document.getElementById('details')?.textContent ?? '').includes('Stateready')",
      undefined,
      {
        timeout: 20_000,
      },
    );
    const log = (await page.textContent('#log')) ?? '';
    for (let i = 1; i <= 6; i++) t.equal(log.split(`line ${i}\n`).length, 2, `line ${i} once`);
    t.same(outside, [], 'no request outside the server');
  },
);
