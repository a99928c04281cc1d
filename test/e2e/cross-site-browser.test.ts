import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { executeAsync, expectJsonError, getHistory } from '../helpers/api';
import { launchChromium } from '../helpers/chromium';
import { newSessionId, startService, synthetic, type RunningService } from '../helpers/service';

/**
 * Another web site tries to start and cancel runs through a visitor's real browser (headless
 * Chromium): a page on `localhost` (another site than the service on `127.0.0.1`) posts an
 * `enctype=text/plain` form, a `no-cors` fetch, and a JSON fetch. None of them reaches a run.
 */

/** The attacker's page; `window.attack` is filled in per test. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>another site</title>
<form id="form" method="post" enctype="text/plain"><input id="field" type="hidden"></form>
<script>window.ready = true;</script>
`;

function startPageServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
  });
  return new Promise((resolve) => {
    // Every address, so `localhost` reaches it whether it resolves to 127.0.0.1 or ::1.
    server.listen(0, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

describe('cross-site requests from a real browser', () => {
  let browser: Browser;
  let pages: { port: number; close(): Promise<void> };
  let svc: RunningService;
  /** What the service answered each request the browser sent it, by method and path. */
  const answered: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    pages = await startPageServer();
    svc = await startService({ keepAliveMs: null });
  }, 60000);

  afterAll(async () => {
    await browser?.close();
    await svc?.close();
    await pages?.close();
  });

  async function attackerPage(): Promise<Page> {
    const page = await browser.newPage();
    page.on('response', (response) => {
      if (response.url().startsWith(svc.url)) answered.push(`${response.request().method()} ${new URL(response.url()).pathname} ${response.status()}`);
    });
    await page.goto(`http://localhost:${pages.port}/`);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    return page;
  }

  it('refuses a text/plain form whose body is JSON-shaped: the browser shows 403 origin_not_allowed and no run starts', async () => {
    const sessionId = newSessionId();
    const page = await attackerPage();
    const name = JSON.stringify({ project_id: 'p', query: 'q', workflow: 'synthetic', params: { events: 1 }, session_id: sessionId, x: '' }).slice(0, -2);
    const navigation = page.waitForResponse((response) => response.url() === `${svc.url}/execute`);
    await page.evaluate(
      ([action, fieldName]) => {
        const form = document.getElementById('form') as HTMLFormElement;
        const field = document.getElementById('field') as HTMLInputElement;
        form.action = action;
        field.name = fieldName;
        field.value = '"}';
        form.submit();
      },
      [`${svc.url}/execute`, name] as const,
    );
    const response = await navigation;
    expect(response.status()).toBe(403);
    expect(await response.json()).toEqual({ error: { code: 'origin_not_allowed', message: expect.any(String) } });
    // What the browser sent is what a form sends: text/plain, from another site.
    const sent = await response.request().allHeaders();
    expect(sent['content-type']).toBe('text/plain');
    expect(sent['sec-fetch-site']).toBe('cross-site');
    // …and its body is JSON a server reading any body as JSON would have run.
    expect(JSON.parse((await response.request().postData()) ?? '')).toMatchObject({ session_id: sessionId, workflow: 'synthetic', x: '=' });
    expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
    await page.close();
  });

  it('refuses a no-cors fetch to cancel, and a JSON fetch never gets past its preflight: the run goes on', async () => {
    const sessionId = newSessionId();
    expect((await executeAsync(svc.url, synthetic(sessionId, { events: 2, interval_ms: 60000 }))).status).toBe(202);
    const page = await attackerPage();
    const outcomes = await page.evaluate(async (base) => {
      const tries = [
        // "Simple" requests: sent without asking, their answers opaque to the page.
        fetch(`${base}/cancel`, { method: 'POST', mode: 'no-cors' }),
        fetch(`${base}/cancel`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: '{}' }),
        // JSON: the browser asks first; the service names no allowed origin, so it is never sent.
        fetch(`${base}/cancel`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }),
      ];
      return Promise.all(tries.map((attempt) => attempt.then((response) => response.type, (error: Error) => `rejected: ${error.name}`)));
    }, `${svc.url}/timeline/${sessionId}`);
    expect(outcomes).toEqual(['opaque', 'opaque', 'rejected: TypeError']);
    expect((await getHistory(svc.url, sessionId)).json.status).toBe('running');
    const cancelAnswers = answered.filter((line) => line.includes(`/timeline/${sessionId}/cancel`));
    // The two simple requests were refused; the JSON one was only ever a preflight (OPTIONS).
    expect(cancelAnswers.filter((line) => line.startsWith('POST')).map((line) => line.split(' ')[2])).toEqual(['403', '403']);
    await page.close();
  });
});
