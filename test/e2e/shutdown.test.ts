import { TimelineClient } from '../../client-sdk/src';
import type { DonePayload, TimelineEvent } from '../../client-sdk/src/types';
import { HANDOVER_RETRY_MAX_MS, HANDOVER_RETRY_MIN_MS } from '../../server/http/stream-registry';
import { executeAsync, getHistory } from '../helpers/api';
import { startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { nextEvent, record, settle, tapEvents } from '../helpers/sdk-run';
import { newSessionId, synthetic } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents, trailingRetry, type SseReader } from '../helpers/sse-reader';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';
import { range, seqs } from '../helpers/timeline-fixtures';
import { within } from '../helpers/wait';

/**
 * Graceful shutdown of one of two real `npm start` processes on a private `redis-server`:
 * its readers are handed over to the other process, its runs get the grace period, and every
 * run still ends with `done`, which the other process serves.
 */

let redis: RedisServer;
/** The process that stays up. */
let b: ListeningProcess;
const { follow, closeAll: closeStreams } = streamFollower();
const proxies: TcpProxy[] = [];
const controllers: AbortController[] = [];

const env = (extra: Record<string, string> = {}) => ({ KEEPALIVE_MS: '1000', ...extra, REDIS_URL: redis.url });

beforeAll(async () => {
  redis = await startRedisServer();
  b = await startProcess(env());
});
afterEach(async () => {
  for (const controller of controllers.splice(0)) controller.abort();
  closeStreams();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});
afterAll(async () => {
  await stopAllProcesses();
  await redis?.stop();
});

const eventsOf = (reader: SseReader) => timelineEvents<TimelineEvent>(reader);

it('hands an open stream over with a short retry; a run outliving the grace ends failed "shutdown", served by the other process', async () => {
  const graceMs = 1500;
  const a = await startProcess(env({ SHUTDOWN_GRACE_MS: String(graceMs) }));
  const sessionId = newSessionId();
  const first = await follow(a.url, sessionId);
  // 20 s of events: far beyond the grace.
  expect((await executeAsync(a.url, synthetic(sessionId, { events: 1000, interval_ms: 20 }))).status).toBe(202);
  await first.waitFor(seqAtLeast(5), 10000, 'seq 5 before the signal');

  const signalledAt = Date.now();
  a.child.kill('SIGTERM');
  await within(first.ended, 3000, 'the stream on the stopping process to end');
  const endedAt = Date.now();

  // Ended at once (not after the grace), without done, with a short reconnection delay.
  expect(endedAt - signalledAt).toBeLessThan(1000);
  expect(first.frames.some(isNamed('done'))).toBe(false);
  const hint = trailingRetry(first);
  expect(hint).not.toBeNull();
  expect(hint).toBeGreaterThanOrEqual(HANDOVER_RETRY_MIN_MS);
  expect(hint).toBeLessThan(HANDOVER_RETRY_MAX_MS);
  expect(first.retry).toBe(hint);

  const lastId = eventsOf(first).at(-1)?.event_id as string;
  const second = await follow(b.url, sessionId, { 'Last-Event-ID': lastId });
  const doneFrame = await second.waitFor(isNamed('done'), graceMs + 10000, 'done on the other process');
  const done = JSON.parse(doneFrame.data) as DonePayload;
  expect(done).toEqual({ status: 'failed', error: { code: 'shutdown', message: expect.any(String) } });

  // Every event exactly once across the two processes; the run's last event says why it ended.
  const all = [...eventsOf(first), ...eventsOf(second)];
  expect(seqs(all)).toEqual(range(1, all.length));
  expect(new Set(all.map((e) => e.event_id)).size).toBe(all.length);
  expect(all.at(-1)).toMatchObject({ type: 'WORKFLOW_ERROR', details: { error: { code: 'shutdown' } } });
  expect(second.frames.filter((f) => f.event !== undefined).map((f) => f.event)).toEqual(['ready', 'done']);

  const exit = await within(a.exited, 10000, 'the stopped process to exit');
  const exitedAt = Date.now();
  expect(exit).toEqual({ code: 0, signal: null });
  // The run was given the grace period, not cut at once, and the process did not linger.
  expect(exitedAt - signalledAt).toBeGreaterThanOrEqual(graceMs - 50);
  expect(exitedAt - signalledAt).toBeLessThan(graceMs + 4000);
  expect(a.logs().find((l) => l.msg === 'draining')).toMatchObject({ streams: 1, runs: 1, grace_ms: graceMs });

  // The lease was released with done; the session is final for every instance.
  const admin = redis.admin();
  expect(await admin.exists(`timeline:{${sessionId}}:lease`)).toBe(0);
  expect(await admin.hget(`timeline:{${sessionId}}:meta`, 'status')).toBe('failed');
  const history = await getHistory(b.url, sessionId);
  expect(history.json).toMatchObject({ status: 'failed', done: { status: 'failed', error: { code: 'shutdown' } } });
  expect(history.json.events).toHaveLength(all.length);
});

it('lets a run that fits in the grace complete; the handed-over reader gets the rest and done completed', async () => {
  const a = await startProcess(env({ SHUTDOWN_GRACE_MS: '10000' }));
  const sessionId = newSessionId();
  const first = await follow(a.url, sessionId);
  expect((await executeAsync(a.url, synthetic(sessionId, { events: 15, interval_ms: 100 }))).status).toBe(202);
  await first.waitFor(seqAtLeast(3), 10000, 'seq 3 before the signal');

  const signalledAt = Date.now();
  a.child.kill('SIGTERM');
  await within(first.ended, 3000, 'the stream on the stopping process to end');
  expect(Date.now() - signalledAt).toBeLessThan(1000);
  expect(trailingRetry(first)).not.toBeNull();
  expect(first.frames.some(isNamed('done'))).toBe(false);

  const lastId = eventsOf(first).at(-1)?.event_id as string;
  const second = await follow(b.url, sessionId, { 'Last-Event-ID': lastId });
  const doneFrame = await second.waitFor(isNamed('done'), 10000, 'done on the other process');
  expect(JSON.parse(doneFrame.data)).toEqual({ status: 'completed', result: { events: 15 } });
  expect([...seqs(eventsOf(first)), ...seqs(eventsOf(second))]).toEqual(range(1, 17));

  const exit = await within(a.exited, 10000, 'the stopped process to exit');
  expect(exit).toEqual({ code: 0, signal: null });
  // Exited once its run was done, not after the whole grace period.
  expect(Date.now() - signalledAt).toBeLessThan(6000);
  expect(await redis.admin().exists(`timeline:{${sessionId}}:lease`)).toBe(0);
});

it('moves an SDK client behind a balancer to the other process within the hint, not after RETRY_MS', async () => {
  // A long RETRY_MS: were the handover hint missing, the client would wait at least this long.
  const retryMs = 10000;
  const a = await startProcess(env({ SHUTDOWN_GRACE_MS: '1000', RETRY_MS: String(retryMs) }));
  const proxy = await startTcpProxy(a.port);
  proxies.push(proxy);
  const controller = new AbortController();
  controllers.push(controller);
  const client = new TimelineClient({ baseUrl: proxy.url, reconnect: { initialDelayMs: 50, maxAttempts: 10 }, stallTimeoutMs: 5000 });
  const sessionId = newSessionId();
  // The run starts first; the client replays it from the start, then follows it live.
  expect((await executeAsync(a.url, synthetic(sessionId, { events: 400, interval_ms: 20 }))).status).toBe(202);
  const run = client.follow(sessionId, { signal: controller.signal });
  const recorded = record(run);
  const arrivals: number[] = [];
  tapEvents(run, () => arrivals.push(Date.now()));
  await nextEvent(run, (event) => event.seq === 5, 'seq 5 through the balancer');

  // The balancer takes A out of rotation as the orchestrator signals it.
  proxy.setTarget(b.port);
  a.child.kill('SIGTERM');
  const outcome = await settle(run);

  // The server's done reached the client (onDone, not onError); a failed run rejects its result.
  expect(outcome.error?.code).toBe('shutdown');
  expect(recorded.errors).toEqual([]);
  expect(recorded.done).toHaveLength(1);
  expect(recorded.done[0]).toMatchObject({ status: 'failed', error: { code: 'shutdown' } });
  expect(seqs(recorded.events)).toEqual(range(1, recorded.events.length));
  // The longest silence is the handover: the hint (< 1 s) plus the SDK's jitter (up to 50 %).
  const silences = arrivals.slice(1).map((at, i) => at - arrivals[i]);
  expect(Math.max(...silences)).toBeLessThan(retryMs / 2);
  const streamRequests = proxy.requests.filter((r) => r.path.startsWith(`/timeline/stream/${sessionId}`));
  expect(streamRequests.map((r) => r.target)).toEqual([a.port, b.port]);
  // It resumed after an event it had, on the other process.
  expect(recorded.events.map((e) => e.event_id)).toContain(streamRequests[1].headers['last-event-id']);
  expect(await within(a.exited, 10000, 'A to exit')).toEqual({ code: 0, signal: null });
});
