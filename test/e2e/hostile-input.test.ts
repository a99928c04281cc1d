import type { TimelineEvent } from '../../client-sdk/src/types';
import { executeAsync, expectJsonError, metricSample, parseRawResponse, postExecuteRaw, request, sendRaw } from '../helpers/api';
import { startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { newSessionId, synthetic } from '../helpers/service';
import { isNamed, streamFollower, timelineEvents, type SseReader } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';

/**
 * What an attacker or a careless client sends, as black-box requests against real instances on
 * the Redis bus, as shipped (auth off, no synthetic workflow): each is refused with the JSON
 * error shape, the instance keeps serving, and a victim session running meanwhile (executed on
 * a load-testing instance, streamed through the attacked one) loses nothing.
 */

const VICTIM_EVENTS = 120;

let redis: RedisServer;
/** As shipped: the defaults (ENABLE_SYNTHETIC off). */
let target: ListeningProcess;
/** Runs the victim's long synthetic session; same Redis. */
let loadTester: ListeningProcess;
let victimId: string;
let victim: SseReader;
const { follow, closeAll } = streamFollower();

beforeAll(async () => {
  redis = await startRedisServer({ args: ['--maxmemory', '256mb', '--maxmemory-policy', 'noeviction'] });
  [target, loadTester] = await Promise.all([
    startProcess({ REDIS_URL: redis.url, ENABLE_SYNTHETIC: '0' }),
    startProcess({ REDIS_URL: redis.url, ENABLE_SYNTHETIC: '1' }),
  ]);
  victimId = newSessionId();
  victim = await follow(target.url, victimId);
  const started = await executeAsync(loadTester.url, synthetic(victimId, { events: VICTIM_EVENTS, interval_ms: 40 }));
  expect(started.status).toBe(202);
});

afterAll(async () => {
  closeAll();
  await stopAllProcesses();
  await redis?.stop();
});

async function rssBytes(proc: ListeningProcess): Promise<number> {
  return metricSample((await request(`${proc.url}/metrics`)).text, 'process_resident_memory_bytes');
}

it('survives the five-request attack: the synthetic workflow is off, so each is 400 at once', async () => {
  const attack = { project_id: 'p', query: 'q', workflow: 'synthetic', params: { events: 10000, payload_bytes: 65536 } };
  const before = await rssBytes(target);
  for (let i = 0; i < 5; i++) {
    const response = await postExecuteRaw(target.url, JSON.stringify(attack));
    expect(expectJsonError(response, 400, 'invalid_request')).toMatch(/unknown workflow "synthetic"/);
  }
  expect((await request(`${target.url}/healthz`)).status).toBe(200);
  expect(await rssBytes(target)).toBeLessThan(before + 64 * 1024 * 1024);
});

it('refuses a cross-site form post (403) and a body that is not declared JSON (415)', async () => {
  const form = '{"project_id":"p","query":"q","x":"=x"}';
  const crossSite = await postExecuteRaw(target.url, form, { 'Content-Type': 'text/plain', Origin: 'https://evil.example', 'Sec-Fetch-Site': 'cross-site' });
  expectJsonError(crossSite, 403, 'origin_not_allowed');
  expectJsonError(await postExecuteRaw(target.url, form, { 'Content-Type': 'text/plain' }), 415, 'unsupported_media_type');
});

it('answers a context nested 120,000 levels deep with 400, not 500', async () => {
  const body = `{"project_id":"p","query":"q","context":[{"type":"t","id":"i","x":${'['.repeat(120_000)}${']'.repeat(120_000)}}]}`;
  expectJsonError(await postExecuteRaw(target.url, body), 400, 'invalid_request');
});

it("answers headers over Node's limit with 431 in the JSON error shape", async () => {
  const raw = parseRawResponse(await sendRaw(target.url, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'x'.repeat(32 * 1024)}\r\n\r\n`));
  expect({ status: raw.status, code: JSON.parse(raw.body).error.code }).toEqual({ status: 431, code: 'headers_too_large' });
});

it('kept serving the victim session through all of it: every event once, in order, then done', async () => {
  const done = await victim.waitFor(isNamed('done'), 30000, "the victim session's done");
  expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: VICTIM_EVENTS } });
  expect(seqs(timelineEvents<TimelineEvent>(victim))).toEqual(range(1, VICTIM_EVENTS + 2));
  expect(victim.frames.filter(isNamed('gap'))).toEqual([]);
  expect((await request(`${target.url}/readyz`)).status).toBe(200);
});
