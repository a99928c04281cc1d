import path from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import type { SessionHistory } from '../../src/types';
import { getHistory } from '../../../test/helpers/api';
import { launchChromium } from '../../../test/helpers/chromium';
import { newSessionId, startService, type RunningService } from '../../../test/helpers/service';
import { startTcpProxy, type ProxiedRequest, type TcpProxy } from '../../../test/helpers/tcp-proxy';
import { range } from '../../../test/helpers/timeline-fixtures';
import { startPageServer, type PageServer } from '../helpers/page-server';

/**
 * useTimeline (@timeline/client/react, the built package) driving a React app in StrictMode
 * in headless Debian Chromium, against a real service behind a TCP proxy that records every
 * request: reloads mid-run and after the end, reset, persist off, an expired session, an app
 * that starts its run from an effect. The app is react-app/main.tsx, bundled here by esbuild
 * with React's development build (where StrictMode runs effects twice).
 */

const APP_DIR = path.join(__dirname, 'react-app');
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>useTimeline test app</title>
<link rel="icon" href="data:,">
<div id="root"></div>
<script type="module" src="/app.js"></script>
`;

interface View {
  status: string;
  sessionId: string;
  error: string;
  result: string;
  seqs: number[];
  ids: string[];
}

interface AppWindow {
  effectRuns?: number;
  /** The seq of each timeline row as it was added to the page, since the page loaded. */
  added?: number[];
}

let browser: Browser;
let pages: PageServer;
let svc: RunningService;
let proxy: TcpProxy;
const opened: Page[] = [];
let errors: string[] = [];

async function bundleApp(): Promise<string> {
  const result = await build({
    entryPoints: [path.join(APP_DIR, 'main.tsx')],
    tsconfig: path.join(APP_DIR, 'tsconfig.json'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    define: { 'process.env.NODE_ENV': '"development"' },
    write: false,
    logLevel: 'warning',
  });
  return result.outputFiles[0].text;
}

beforeAll(async () => {
  browser = await launchChromium();
  const app = await bundleApp();
  pages = await startPageServer({
    '/': { type: 'text/html; charset=utf-8', body: PAGE },
    '/app.js': { type: 'text/javascript; charset=utf-8', body: app },
  });
  svc = await startService({ corsOrigins: [pages.url], retryMs: 100, keepAliveMs: 1000 });
  proxy = await startTcpProxy(Number(new URL(svc.url).port));
}, 60000);

afterEach(async () => {
  await Promise.all(opened.splice(0).map((page) => page.close()));
  // Uncaught exceptions and console errors (React's warnings, CORS refusals) fail the test.
  expect(errors).toEqual([]);
  errors = [];
});

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await svc?.close();
  await pages?.close();
});

/** Opens the app with `query` (it follows the service through the proxy); records rows as they are added. */
async function openApp(query: Record<string, string | number> = {}): Promise<Page> {
  const page = await browser.newPage();
  opened.push(page);
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  // Runs on every load, reloads included, before the app's script.
  await page.addInitScript(() => {
    const recorded: number[] = [];
    (window as AppWindow).added = recorded;
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        for (const node of Array.from(mutation.addedNodes)) {
          if (node instanceof HTMLElement && node.dataset.seq !== undefined) recorded.push(Number(node.dataset.seq));
        }
      }
    }).observe(document, { childList: true, subtree: true });
  });
  const search = new URLSearchParams({ service: proxy.url, ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])) });
  await page.goto(`${pages.url}/?${search}`);
  await page.waitForSelector('#status');
  return page;
}

function view(page: Page): Promise<View> {
  return page.evaluate(() => {
    const text = (id: string) => document.getElementById(id)?.textContent ?? '';
    const rows = Array.from(document.querySelectorAll<HTMLElement>('#timeline > li'));
    return {
      status: document.getElementById('status')?.dataset.status ?? '',
      sessionId: text('session'),
      error: text('error'),
      result: text('result'),
      seqs: rows.map((row) => Number(row.dataset.seq)),
      ids: rows.map((row) => row.dataset.id ?? ''),
    };
  });
}

async function statusIs(page: Page, status: string, timeout = 30000): Promise<View> {
  await page.waitForFunction((want) => document.getElementById('status')?.dataset.status === want, status, { timeout });
  return view(page);
}

/** Waits until the app shows at least `count` rows while it still says running. */
async function rowsWhileRunning(page: Page, count: number): Promise<View> {
  await page.waitForFunction(
    (want) =>
      document.getElementById('status')?.dataset.status === 'running' && document.querySelectorAll('#timeline > li').length >= want,
    count,
    { timeout: 30000 },
  );
  return view(page);
}

const added = (page: Page): Promise<number[]> => page.evaluate(() => (window as AppWindow).added ?? []);
const effectRuns = (page: Page): Promise<number | undefined> => page.evaluate(() => (window as AppWindow).effectRuns);

/** What reached the service since `from` (an index into the proxy's log). */
function requestsSince(from: number) {
  const since = proxy.requests.slice(from);
  return {
    posts: since.filter((request) => request.method === 'POST' && request.path === '/execute'),
    streams: (sessionId: string): ProxiedRequest[] =>
      since.filter((request) => request.method === 'GET' && request.path === `/timeline/stream/${sessionId}`),
  };
}

async function history(sessionId: string): Promise<SessionHistory> {
  const response = await getHistory(svc.url, sessionId);
  expect(response.status).toBe(200);
  return response.json;
}

const storageKey = () => `@timeline/client:${proxy.url}`;
const saved = (page: Page): Promise<string | null> => page.evaluate((key) => sessionStorage.getItem(key), storageKey());

it('reattaches after a reload mid-run: the whole timeline once and in order, then live events, then done', async () => {
  const from = proxy.requests.length;
  const events = 60;
  const page = await openApp({ events, interval: 100 });
  // React's development build in StrictMode: the app's effects really ran twice.
  expect(await effectRuns(page)).toBe(2);
  await page.getByRole('button', { name: 'Start' }).click();
  const before = await rowsWhileRunning(page, 10);
  expect(before.seqs).toEqual(range(1, before.seqs.length));
  expect(JSON.parse((await saved(page)) ?? 'null')).toMatchObject({ sessionId: before.sessionId });

  await page.reload();
  // The same session, its events replayed from the start, while the run still goes on.
  const resumed = await rowsWhileRunning(page, before.seqs.length);
  expect(resumed.sessionId).toBe(before.sessionId);
  expect(resumed.seqs.length).toBeLessThan(events + 2);
  const done = await statusIs(page, 'completed');

  const stored = await history(before.sessionId);
  expect(done.seqs).toEqual(range(1, events + 2));
  expect(done.ids).toEqual(stored.events.map((event) => event.event_id));
  expect(done.result).toBe(JSON.stringify({ events }));
  // Since the reload every row was added once, in order: no duplicate, nothing missing.
  expect(await added(page)).toEqual(range(1, events + 2));
  expect(await effectRuns(page)).toBe(2);
  // One run; one stream per page load although StrictMode mounted twice; the second from the start.
  const { posts, streams } = requestsSince(from);
  expect(posts).toHaveLength(1);
  expect(streams(before.sessionId)).toHaveLength(2);
  expect(streams(before.sessionId)[1].headers['last-event-id']).toBeUndefined();
}, 60000);

it('after done, a reload shows the finished timeline replayed from the log; Start then runs anew', async () => {
  const from = proxy.requests.length;
  const page = await openApp({ events: 5, interval: 10 });
  await page.getByRole('button', { name: 'Start' }).click();
  const first = await statusIs(page, 'completed');
  expect(first.seqs).toEqual(range(1, 7));

  await page.reload();
  const replayed = await statusIs(page, 'completed');
  expect(replayed).toEqual(first);
  expect(await added(page)).toEqual(range(1, 7));
  expect(requestsSince(from).posts).toHaveLength(1);
  expect(requestsSince(from).streams(first.sessionId)).toHaveLength(2);

  await page.getByRole('button', { name: 'Start' }).click();
  await page.waitForFunction((old) => document.getElementById('session')?.textContent !== old, first.sessionId);
  const second = await statusIs(page, 'completed');
  expect(second.sessionId).not.toBe(first.sessionId);
  expect(second.seqs).toEqual(range(1, 7));
  expect(requestsSince(from).posts).toHaveLength(2);
}, 60000);

it('cancel() from the app ends the run cancelled, and a reload shows that', async () => {
  const page = await openApp({ events: 300, interval: 50 });
  await page.getByRole('button', { name: 'Start' }).click();
  const running = await rowsWhileRunning(page, 3);
  await page.getByRole('button', { name: 'Cancel' }).click();
  const cancelled = await statusIs(page, 'cancelled');
  expect((await history(running.sessionId)).done?.status).toBe('cancelled');
  expect(cancelled.seqs).toEqual(range(1, cancelled.seqs.length));
  expect(cancelled.seqs.length).toBeLessThan(302);
  await page.reload();
  expect(await statusIs(page, 'cancelled')).toEqual(cancelled);
}, 60000);

it('reset() forgets the session: idle, and still idle after a reload', async () => {
  const page = await openApp({ events: 3, interval: 10 });
  await page.getByRole('button', { name: 'Start' }).click();
  await statusIs(page, 'completed');
  await page.getByRole('button', { name: 'Reset' }).click();
  expect(await statusIs(page, 'idle')).toMatchObject({ sessionId: '', seqs: [] });
  expect(await saved(page)).toBeNull();
  const from = proxy.requests.length;
  await page.reload();
  expect(await statusIs(page, 'idle')).toMatchObject({ sessionId: '', seqs: [] });
  expect(proxy.requests.slice(from).filter((request) => request.path.startsWith('/timeline/'))).toEqual([]);
}, 60000);

it('a kept session the service no longer has: a clear idle state after the reload', async () => {
  const page = await openApp();
  const gone = newSessionId();
  await page.evaluate(([key, sessionId]) => sessionStorage.setItem(key, JSON.stringify({ sessionId, lastEventId: '1700000000000-0' })), [
    storageKey(),
    gone,
  ] as const);
  const from = proxy.requests.length;
  await page.reload();
  await page.waitForFunction((key) => sessionStorage.getItem(key) === null, storageKey(), { timeout: 30000 });
  expect(await statusIs(page, 'idle')).toMatchObject({ sessionId: '', seqs: [], error: '' });
  // It did ask: the stream said the session is waiting (nothing known), so there is nothing to show.
  expect(requestsSince(from).streams(gone)).toHaveLength(1);
}, 60000);

it('with persist off a reload forgets the run, which goes on on the server', async () => {
  const page = await openApp({ events: 20, interval: 20, persist: 'off' });
  await page.getByRole('button', { name: 'Start' }).click();
  const running = await rowsWhileRunning(page, 3);
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  await page.reload();
  expect(await statusIs(page, 'idle')).toMatchObject({ sessionId: '', seqs: [] });
  const stored = await history(running.sessionId);
  expect(stored.events.length).toBeGreaterThanOrEqual(3);
}, 60000);

it('an app that starts its run from a StrictMode effect starts one run, and a reload reattaches to it', async () => {
  const from = proxy.requests.length;
  const events = 40;
  const page = await openApp({ autostart: 1, events, interval: 100 });
  expect(await effectRuns(page)).toBe(2);
  const before = await rowsWhileRunning(page, 5);
  await page.reload();
  const done = await statusIs(page, 'completed');
  expect(done.sessionId).toBe(before.sessionId);
  expect(done.seqs).toEqual(range(1, events + 2));
  expect(await added(page)).toEqual(range(1, events + 2));
  const { posts, streams } = requestsSince(from);
  expect(posts).toHaveLength(1);
  expect(streams(before.sessionId)).toHaveLength(2);
}, 60000);
