import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { getHistory } from '../../../test/helpers/api';
import { launchChromium } from '../../../test/helpers/chromium';
import { startService, type RunningService } from '../../../test/helpers/service';
import { startPageServer, type PageServer } from '../helpers/page-server';

/**
 * The built browser bundle (client-sdk/dist/timeline-client.browser.js) in headless Debian
 * Chromium, loaded by a plain page from another origin (so CORS and the preflight of
 * `Last-Event-ID` / `Prefer` are real), following runs of a real server to `done`.
 */

// Built by jest's globalSetup when this suite runs, as `npm run build` builds it.
const BUNDLE = path.resolve(__dirname, '..', '..', 'dist', 'timeline-client.browser.js');

/** What the page shows: one line per timeline event, and the outcome. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>timeline SDK test page</title>
<ol id="timeline"></ol>
<p id="status">idle</p>
<script type="module">
  import { TimelineClient } from './timeline-client.browser.js';
  const show = (run) => {
    run.onEvent = (event) => {
      const item = document.createElement('li');
      item.textContent = event.seq + ' ' + event.type;
      item.dataset.id = event.event_id;
      document.getElementById('timeline').append(item);
    };
    run.onDone = (done) => { document.getElementById('status').textContent = done.status; };
    run.onError = (error) => { document.getElementById('status').textContent = 'error ' + error.code; };
    return run.sessionId;
  };
  window.startRun = (baseUrl, params) =>
    show(new TimelineClient({ baseUrl }).execute({ project_id: 'demo', query: 'browser', workflow: 'synthetic', params }));
  window.followRun = (baseUrl, sessionId) => show(new TimelineClient({ baseUrl }).follow(sessionId));
  window.sdkLoaded = true;
</script>
`;

describe('client SDK in headless Chromium', () => {
  let browser: Browser;
  let pages: PageServer;
  let svc: RunningService;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    pages = await startPageServer({
      '/': { type: 'text/html; charset=utf-8', body: PAGE },
      '/timeline-client.browser.js': { type: 'text/javascript; charset=utf-8', body: () => readFileSync(BUNDLE) },
    });
    svc = await startService({ corsOrigins: [pages.url], retryMs: 100, keepAliveMs: 1000 });
  }, 60000);

  afterAll(async () => {
    await browser?.close();
    await svc?.close();
    await pages?.close();
  });

  async function openPage(): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(pages.url);
    await page.waitForFunction(() => (window as unknown as { sdkLoaded?: boolean }).sdkLoaded === true, undefined, {
      timeout: 10000,
    });
    return page;
  }

  async function rendered(page: Page): Promise<{ status: string; lines: string[]; ids: string[] }> {
    await page.waitForFunction(() => document.getElementById('status')?.textContent !== 'idle', undefined, { timeout: 20000 });
    return page.evaluate(() => ({
      status: document.getElementById('status')?.textContent ?? '',
      lines: Array.from(document.querySelectorAll('#timeline li')).map((item) => item.textContent ?? ''),
      ids: Array.from(document.querySelectorAll<HTMLElement>('#timeline li')).map((item) => item.dataset.id ?? ''),
    }));
  }

  it('runs a workflow from a page and renders its live timeline to done', async () => {
    const page = await openPage();
    const sessionId = await page.evaluate(
      ([baseUrl, params]) => (window as unknown as { startRun: (u: string, p: unknown) => string }).startRun(baseUrl, params),
      [svc.url, { events: 20, interval_ms: 5 }] as const,
    );
    const view = await rendered(page);
    expect(view.status).toBe('completed');
    expect(view.lines).toEqual([
      '1 WORKFLOW_START',
      ...Array.from({ length: 20 }, (_, i) => `${i + 2} AGENT_MESSAGE`),
      '22 WORKFLOW_COMPLETE',
    ]);
    const stored = (await getHistory(svc.url, sessionId)).json;
    expect(view.ids).toEqual(stored.events.map((event) => event.event_id));
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('follows an existing session from another tab to done', async () => {
    const first = await openPage();
    const sessionId = await first.evaluate(
      ([baseUrl, params]) => (window as unknown as { startRun: (u: string, p: unknown) => string }).startRun(baseUrl, params),
      [svc.url, { events: 30, interval_ms: 10 }] as const,
    );
    const second = await openPage();
    await second.evaluate(
      ([baseUrl, id]) => (window as unknown as { followRun: (u: string, s: string) => string }).followRun(baseUrl, id),
      [svc.url, sessionId] as const,
    );
    const [own, joined] = await Promise.all([rendered(first), rendered(second)]);
    expect(joined.status).toBe('completed');
    expect(joined.lines).toHaveLength(32);
    expect(joined.lines).toEqual(own.lines);
    expect(pageErrors).toEqual([]);
  });
});
