import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { SessionHistory } from '../../client-sdk/src/types';
import { getHistory, request } from '../helpers/api';
import { launchChromium } from '../helpers/chromium';
import { startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';

/**
 * The demo page at `GET /` (demo/, built into dist/demo by jest's globalSetup as by
 * `npm run build`) in headless Debian Chromium, served by the compiled service running as a
 * process, driven the way a person uses it: through its labelled form and buttons.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(ROOT, 'artifacts');

/** What the page recorded while a run went on: each rendered event and the connection states. */
interface Recording {
  rows: Array<{ seq: number; type: string; status: string; at: number }>;
  states: string[];
}

interface View {
  status: string;
  statusText: string;
  seqs: number[];
  ids: string[];
  rowTypes: string[];
  answer: string;
}

let browser: Browser;
let svc: ListeningProcess;
let proxy: TcpProxy;
const pages: Page[] = [];

beforeAll(async () => {
  browser = await launchChromium();
  // A short `retry:` keeps the reconnect case quick; pings keep a cut stream from looking idle.
  svc = await startProcess({ RETRY_MS: '500', KEEPALIVE_MS: '1000' });
  proxy = await startTcpProxy(svc.port);
}, 60000);

afterEach(async () => {
  await Promise.all(pages.splice(0).map((page) => page.close()));
});

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await stopAllProcesses();
});

/** Opens the page; `errors` collects uncaught exceptions and console errors (a CSP refusal, say). */
async function openDemo(baseUrl: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
  pages.push(page);
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  const response = await page.goto(`${baseUrl}/`);
  expect(response?.status()).toBe(200);
  return { page, errors };
}

/** Starts recording every rendered event (with the run status at that moment) and connection state. */
async function record(page: Page): Promise<void> {
  await page.evaluate(() => {
    const recording: Recording = { rows: [], states: [] };
    (window as unknown as { recording: Recording }).recording = recording;
    const status = document.getElementById('run-status') as HTMLElement;
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        for (const node of Array.from(mutation.addedNodes)) {
          if (!(node instanceof HTMLElement) || node.dataset.seq === undefined) continue;
          recording.rows.push({
            seq: Number(node.dataset.seq),
            type: node.dataset.type ?? '',
            status: status.dataset.status ?? '',
            at: performance.now(),
          });
        }
      }
    }).observe(document.getElementById('timeline') as HTMLElement, { childList: true, subtree: true });
    const connection = document.getElementById('connection') as HTMLElement;
    new MutationObserver(() => {
      const state = connection.dataset.state ?? '';
      if (recording.states.at(-1) !== state) recording.states.push(state);
    }).observe(connection, { attributes: true, attributeFilter: ['data-state'] });
  });
}

const recording = (page: Page): Promise<Recording> =>
  page.evaluate(() => (window as unknown as { recording: Recording }).recording);

interface RunForm {
  workflow: 'agents' | 'synthetic';
  query?: string;
  events?: number;
  intervalMs?: number;
  /** `keyboard`: Ctrl+Enter in the query field instead of a click on Run. */
  submit?: 'click' | 'keyboard';
}

/** Fills the form by its labels, presses Run, and returns the session id the page shows. */
async function startRun(page: Page, form: RunForm): Promise<string> {
  await record(page);
  await page.getByLabel('Project').fill('demo');
  if (form.query !== undefined) await page.getByLabel('Query').fill(form.query);
  await page.getByLabel('Workflow').selectOption(form.workflow);
  if (form.workflow === 'synthetic') {
    await page.getByLabel('Events').fill(String(form.events));
    await page.getByLabel('Interval (ms)').fill(String(form.intervalMs));
  }
  if (form.submit === 'keyboard') await page.getByLabel('Query').press('Control+Enter');
  else await page.getByRole('button', { name: 'Run', exact: true }).click();
  const sessionId = await page.locator('#session-id').textContent();
  expect(sessionId).toMatch(/^[0-9a-f-]{36}$/);
  return sessionId as string;
}

/** Waits for the page's run status to be `status` (`running`, `completed`, …). */
async function statusIs(page: Page, status: string, timeout = 20000): Promise<void> {
  await page.waitForFunction((want) => document.getElementById('run-status')?.dataset.status === want, status, {
    timeout,
  });
}

/** Waits until at least `count` event rows are shown while the run status still says running. */
async function rowsWhileRunning(page: Page, count: number): Promise<void> {
  await page.waitForFunction(
    (want) =>
      document.getElementById('run-status')?.dataset.status === 'running' &&
      document.querySelectorAll('#timeline > li[data-seq]').length >= want,
    count,
    { timeout: 20000 },
  );
}

async function view(page: Page): Promise<View> {
  return page.evaluate(() => {
    const nodes = Array.from(document.querySelectorAll<HTMLElement>('#timeline [data-seq]'));
    const status = document.getElementById('run-status') as HTMLElement;
    return {
      status: status.dataset.status ?? '',
      statusText: status.textContent ?? '',
      seqs: nodes.map((node) => Number(node.dataset.seq)),
      ids: nodes.map((node) => node.dataset.eventId ?? ''),
      rowTypes: Array.from(document.querySelectorAll<HTMLElement>('#timeline > li[data-seq]')).map((row) => row.dataset.type ?? ''),
      answer: document.getElementById('answer')?.hidden ? '' : (document.getElementById('answer-text')?.innerText ?? ''),
    };
  });
}

async function history(sessionId: string): Promise<SessionHistory> {
  const response = await getHistory(svc.url, sessionId);
  expect(response.status).toBe(200);
  return response.json;
}

/** Every stored event rendered exactly once, in the stored order (tokens inside their cards). */
function expectEveryEventOnce(shown: View, stored: SessionHistory): void {
  expect([...shown.seqs].sort((a, b) => a - b)).toEqual(stored.events.map((event) => event.seq));
  expect(new Set(shown.ids).size).toBe(shown.ids.length);
  expect(new Set(shown.ids)).toEqual(new Set(stored.events.map((event) => event.event_id)));
}

it('serves the page, its script and its stylesheet without credentials, and nothing else from the demo folder', async () => {
  const page = await request(`${svc.url}/`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
  const script = await request(`${svc.url}/assets/main.js`);
  expect(script.status).toBe(200);
  expect(script.headers.get('content-type')).toMatch(/javascript/);
  expect((await request(`${svc.url}/assets/styles.css`)).headers.get('content-type')).toMatch(/^text\/css/);
  for (const hidden of ['main.ts', 'build.mjs', 'tsconfig.json', '..%2Fpackage.json']) {
    const response = await request(`${svc.url}/assets/${hidden}`);
    expect(response.status).toBe(404);
    expect(response.json.error.code).toBe('not_found');
  }
});

it('shows each step of a run as it happens, before the run ends, then the outcome', async () => {
  const { page, errors } = await openDemo(svc.url);
  const events = 15;
  const intervalMs = 150;
  const sessionId = await startRun(page, { workflow: 'synthetic', events, intervalMs });

  // Seen live: rows keep arriving while the page still says running.
  await rowsWhileRunning(page, 3);
  await rowsWhileRunning(page, 8);
  await statusIs(page, 'completed');

  const shown = await view(page);
  const stored = await history(sessionId);
  expect(stored.events).toHaveLength(events + 2);
  expectEveryEventOnce(shown, stored);
  expect(shown.rowTypes).toEqual(stored.events.map((event) => event.type));
  expect(shown.answer).toContain(`"events": ${events}`);
  expect(await page.locator('#connection').getAttribute('data-state')).toBe('closed');

  // One by one: every step was rendered while running, spread over the run, not in a burst.
  const { rows } = await recording(page);
  const steps = rows.filter((row) => row.type === 'AGENT_MESSAGE');
  expect(steps.map((row) => row.seq)).toEqual(Array.from({ length: events }, (_, i) => i + 2));
  expect(steps.every((row) => row.status === 'running')).toBe(true);
  expect(steps[steps.length - 1].at - steps[0].at).toBeGreaterThan((events - 1) * intervalMs * 0.6);
  expect(errors).toEqual([]);
}, 40000);

it('streams model tokens into the speaking agent card and shows the final answer', async () => {
  const { page, errors } = await openDemo(svc.url);
  const sessionId = await startRun(page, { workflow: 'agents', query: 'Compare Redis Streams and Kafka' });

  await page.waitForFunction(
    () =>
      document.getElementById('run-status')?.dataset.status === 'running' &&
      document.querySelectorAll('.agent-card.streaming .tokens > [data-type="AGENT_TOKEN"]').length >= 2,
    undefined,
    { timeout: 20000 },
  );
  await statusIs(page, 'completed');

  const stored = await history(sessionId);
  const shown = await view(page);
  expectEveryEventOnce(shown, stored);
  const tokens = stored.events.filter((event) => event.type === 'AGENT_TOKEN');
  expect(tokens.length).toBeGreaterThan(3);

  // Each chunk sits, with its text, in a card of the agent that produced it.
  const rendered = await page.evaluate(() =>
    Array.from(document.querySelectorAll<HTMLElement>('[data-type="AGENT_TOKEN"]')).map((chunk) => ({
      id: chunk.dataset.eventId,
      text: chunk.textContent,
      agent: chunk.closest('.agent-card')?.querySelector('.step-agent')?.textContent,
    })),
  );
  expect(rendered).toEqual(tokens.map((event) => ({ id: event.event_id, text: event.details?.text, agent: event.agent_name })));

  // Streamed: chunks were added over time while the run was running, not all at the end.
  const { rows } = await recording(page);
  const chunkTimes = rows.filter((row) => row.type === 'AGENT_TOKEN' && row.status === 'running').map((row) => row.at);
  expect(new Set(chunkTimes).size).toBeGreaterThan(3);

  expect(stored.done?.status).toBe('completed');
  const answer = (stored.done?.result as { answer: string }).answer;
  const words = (text: string) => text.split(/\s+/).filter(Boolean).join(' ');
  expect(words(shown.answer)).toBe(words(answer));
  expect(shown.statusText).toBe('completed');

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page.png') });
  expect(errors).toEqual([]);
}, 40000);

it('cancels a run with the Cancel button, from the keyboard alone', async () => {
  const { page, errors } = await openDemo(svc.url);
  const sessionId = await startRun(page, { workflow: 'synthetic', events: 300, intervalMs: 100, submit: 'keyboard' });
  const cancel = page.getByRole('button', { name: 'Cancel run' });
  const run = page.getByRole('button', { name: 'Run', exact: true });
  // Starting a run moves focus to Cancel, so a keyboard user is one key away from it.
  expect(await cancel.evaluate((button) => button === document.activeElement)).toBe(true);
  expect(await run.isDisabled()).toBe(true);

  await rowsWhileRunning(page, 3);
  await page.keyboard.press('Enter');
  await statusIs(page, 'cancelled');

  const shown = await view(page);
  const stored = await history(sessionId);
  expect(stored.status).toBe('cancelled');
  expect(stored.done?.status).toBe('cancelled');
  expectEveryEventOnce(shown, stored);
  expect(shown.rowTypes.at(-1)).toBe('WORKFLOW_CANCELLED');
  expect(shown.seqs.length).toBeLessThan(302);
  expect(await cancel.isDisabled()).toBe(true);
  // Focus is not lost on the now disabled Cancel: it goes back to Run.
  expect(await run.evaluate((button) => button === document.activeElement)).toBe(true);
  expect(errors).toEqual([]);
}, 40000);

it('shows reconnecting when the stream connection is cut mid-run, recovers, and shows every event once', async () => {
  const { page } = await openDemo(proxy.url);
  const events = 40;
  const sessionId = await startRun(page, { workflow: 'synthetic', events, intervalMs: 100 });
  await rowsWhileRunning(page, 5);
  const streamsBefore = proxy.requests.filter((req) => req.path.startsWith('/timeline/stream/')).length;

  proxy.cutAll();
  await page.waitForFunction(() => document.getElementById('connection')?.dataset.state === 'reconnecting', undefined, {
    timeout: 10000,
  });
  const atCut = await view(page);
  expect(atCut.status).toBe('running');
  expect(atCut.seqs.length).toBeLessThan(events + 2);
  expect(await page.locator('#connection').textContent()).toBe('reconnecting…');

  await statusIs(page, 'completed');
  const shown = await view(page);
  const stored = await history(sessionId);
  expect(stored.events).toHaveLength(events + 2);
  expectEveryEventOnce(shown, stored);
  expect(shown.seqs).toEqual(stored.events.map((event) => event.seq));

  const { states } = await recording(page);
  expect(states).toEqual(['connecting', 'live', 'reconnecting', 'live', 'closed']);
  // The SDK resumed after what it had, through the proxy, rather than replaying from the start.
  const resumed = proxy.requests.filter((req) => req.path.startsWith('/timeline/stream/')).slice(streamsBefore);
  expect(resumed.length).toBeGreaterThanOrEqual(1);
  expect(resumed[0].headers['last-event-id']).toMatch(/^\d+-\d+$/);
}, 40000);

it('works behind API_KEY auth: the page loads without credentials and runs with the access token field', async () => {
  const secured = await startProcess({ API_KEY: 'demo-key-123' });
  const { page, errors } = await openDemo(secured.url);
  expect(await page.locator('#run-status').textContent()).toBe('idle');

  await startRun(page, { workflow: 'synthetic', events: 3, intervalMs: 0 });
  await statusIs(page, 'error');
  expect(await page.locator('#run-status').textContent()).toBe('could not follow the run: unauthorized');
  expect(await page.getByRole('alert').textContent()).toContain('access token');
  expect(errors.filter((error) => error.startsWith('pageerror'))).toEqual([]);

  await page.getByLabel('Access token').fill('demo-key-123');
  const sessionId = await startRun(page, { workflow: 'synthetic', events: 3, intervalMs: 0 });
  await statusIs(page, 'completed');
  const stored = await getHistory(secured.url, sessionId);
  expect(stored.status).toBe(401);
  const authorized = await request(`${secured.url}/timeline/${sessionId}`, { headers: { Authorization: 'Bearer demo-key-123' } });
  expectEveryEventOnce(await view(page), authorized.json);
  expect(await page.getByRole('alert').isHidden()).toBe(true);
}, 40000);
