import { EventSource } from 'eventsource';
import type { TimelineEvent } from '../../client-sdk/src/types';
import { cancelSession, executeAsync, expectJsonError, request } from '../helpers/api';
import { startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { execute, newSessionId, synthetic } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents, type SseReader } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil, within } from '../helpers/wait';

/**
 * Two real `npm start` processes (the compiled service) on one private `redis-server`, as a
 * deployment behind a load balancer runs them: the stream on one, the run on the other.
 */

let redis: RedisServer;
let a: ListeningProcess;
let b: ListeningProcess;
const { follow, closeAll: closeStreams } = streamFollower();

beforeAll(async () => {
  redis = await startRedisServer();
  const env = { REDIS_URL: redis.url, KEEPALIVE_MS: '1000' };
  [a, b] = await Promise.all([startProcess(env), startProcess(env)]);
});
afterEach(() => closeStreams());
afterAll(async () => {
  await stopAllProcesses();
  await redis?.stop();
});

const seqsOf = (reader: SseReader) => seqs(timelineEvents<TimelineEvent>(reader));

it('streams through one process a run executing in the other, to a standard EventSource client', async () => {
  const sessionId = newSessionId();
  const source = new EventSource(`${a.url}/timeline/stream/${sessionId}`);
  const received: TimelineEvent[] = [];
  const ready = new Promise<void>((resolve) => source.addEventListener('ready', () => resolve()));
  const done = new Promise<string>((resolve) => source.addEventListener('done', (event) => resolve(event.data)));
  source.onmessage = (event) => received.push(JSON.parse(event.data) as TimelineEvent);
  try {
    await within(ready, 10000, 'ready');
    const response = await execute(b.url, synthetic(sessionId, { events: 30, interval_ms: 5 }));
    expect(response.status).toBe(200);
    expect(JSON.parse(await within(done, 10000, 'done'))).toEqual({ status: 'completed', result: { events: 30 } });
  } finally {
    source.close();
  }
  expect(seqs(received)).toEqual(range(1, 32));
});

it('keeps a run and its stream going across a Redis restart, then resumes on the other process', async () => {
  const sessionId = newSessionId();
  const first = await follow(a.url, sessionId);
  const accepted = await executeAsync(b.url, synthetic(sessionId, { events: 100, interval_ms: 20 }));
  expect(accepted.status).toBe(202);
  await first.waitFor(seqAtLeast(15), 10000, 'seq 15 before the restart');

  await redis.restart();
  await first.waitFor(seqAtLeast(50), 20000, 'seq 50 after the restart');
  first.destroy();
  const lastId = timelineEvents<TimelineEvent>(first).at(-1)?.event_id as string;

  const second = await follow(b.url, sessionId, { 'Last-Event-ID': lastId });
  const done = await second.waitFor(isNamed('done'), 20000, 'done on the other process');
  expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 100 } });
  expect([...seqsOf(first), ...seqsOf(second)]).toEqual(range(1, 102));
  expect([...first.frames, ...second.frames].filter(isNamed('gap'))).toEqual([]);
  // Both processes lived through it, and report ready again.
  await waitUntil(async () => (await request(`${a.url}/readyz`)).status === 200, { label: 'a ready' });
  await waitUntil(async () => (await request(`${b.url}/readyz`)).status === 200, { label: 'b ready' });
  expect(a.child.exitCode).toBeNull();
  expect(b.child.exitCode).toBeNull();
});

it('survives Redis being down under an open stream, reports not ready, and recovers', async () => {
  const sessionId = newSessionId();
  const waiting = await follow(a.url, sessionId);
  await redis.kill();
  try {
    expectJsonError(await request(`${a.url}/readyz`), 503, 'not_ready');
    expectJsonError(await request(`${b.url}/timeline/stream/${newSessionId()}`), 503, 'bus_unavailable');
    expect((await request(`${a.url}/healthz`)).status).toBe(200);
  } finally {
    await redis.start();
  }
  // Each process reconnects on its own schedule; until it has, it refuses new runs (503).
  await waitUntil(async () => (await request(`${a.url}/readyz`)).status === 200, { label: 'a ready after the outage' });
  await waitUntil(async () => (await request(`${b.url}/readyz`)).status === 200, { label: 'b ready after the outage' });
  // The stream that waited through the outage still sees the run that starts now.
  expect((await execute(b.url, synthetic(sessionId, { events: 5 }))).status).toBe(200);
  await waiting.waitFor(isNamed('done'), 10000, 'done after the outage');
  expect(seqsOf(waiting)).toEqual(range(1, 7));
});

it('cancels, from one process, a run owned by the other', async () => {
  const sessionId = newSessionId();
  const reader = await follow(a.url, sessionId);
  const run = execute(b.url, synthetic(sessionId, { events: 1000, interval_ms: 10 }));
  await reader.waitFor(seqAtLeast(3));
  expect((await cancelSession(a.url, sessionId)).status).toBe(202);
  const done = await reader.waitFor(isNamed('done'));
  expect(JSON.parse(done.data).status).toBe('cancelled');
  expect((await run).body.status).toBe('cancelled');
  expectJsonError(await cancelSession(b.url, sessionId), 409, 'session_finished');
});
