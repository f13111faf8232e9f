// S6: the dashboard in headless Chromium: no request leaves the API origin, it shows pending
// counts (or the idle text) and both stats tables, and the liveness callout turns red once the
// API has been unreachable for more than 6 s.
import { existsSync } from 'node:fs';
import t from 'tap';
import { chromium } from 'playwright-core';
import { setupDownloader, startOrigin, submit } from '../helpers/downloader.js';

const CHROMIUM = '/usr/bin/chromium';

t.test(
  'S6: the dashboard',
  { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` },
  async (t) => {
    const dl = setupDownloader(t);
    const origin = await startOrigin(t);
    origin.route('/slow', () => undefined); // never answers: jobs stay in flight
    const { cli: apiCli, url: api } = await dl.startApi();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    const foreign: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(api)) foreign.push(req.url());
    });
    await page.goto(`${api}/`);
    t.equal(await page.title(), 'Rate Limiting Downloader');
    t.equal(await page.textContent('h1'), 'Downloader');
    await page.waitForSelector('#js-aggregations :text("No running aggregations :(")', {
      timeout: 10_000,
    });
    t.match(await page.textContent('#processor-stats'), /No Stats found :\(/, 'no processor yet');

    await dl.start('processor');
    await dl.start('notifier');
    // One aggregation with a backlog: limit 1, one job stuck in flight, three waiting.
    for (let i = 0; i < 4; i++) {
      await submit(api, {
        url: `${origin.url}/slow`,
        aggr_id: 'dash',
        aggr_limit: 1,
        callback_url: `${origin.url}/cb`,
      });
    }
    await page.waitForSelector('#js-aggregations td:text("3")', { timeout: 15_000 });
    t.match(await page.textContent('#js-aggregations'), /dash/);
    await page.waitForSelector('#processor-stats td:text("spawnedWorkers")', { timeout: 15_000 });
    t.match(await page.textContent('#processor-stats'), /alive/);
    await page.waitForSelector('#notifier-stats td:text("alive")', { timeout: 15_000 });
    t.match(await page.getAttribute('#js-liveness', 'class'), /green/);

    await apiCli.stop('SIGTERM');
    const stoppedAt = Date.now();
    await page.waitForSelector('#js-liveness.red', { timeout: 20_000 });
    // The last successful poll was at most 5 s before the stop, so red comes 1 to 7 s after it.
    t.ok(Date.now() - stoppedAt >= 1000, 'red only once 6 s passed without a successful poll');
    t.same(foreign, [], 'no request outside the API origin');
  },
);
