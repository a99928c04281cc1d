import type { TimelineEvent } from '../../client-sdk/src/types';
import { executeAsync, request } from '../helpers/api';
import { startProcess, stopAllProcesses } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { newSessionId, synthetic } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents, type SseFrame, type SseReader } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil } from '../helpers/wait';

/**
 * Faults with real `npm start` processes on a private `redis-server`: the run's owner killed
 * with SIGKILL, the instance serving a stream killed, and Redis restarting empty mid-run.
 * Every client ends with each event once (or an explicit `event: gap`) and a `done`.
 */

const LEASE_MS = 1000;

let redis: RedisServer;
const { follow, closeAll: closeStreams } = streamFollower();

beforeAll(async () => {
  redis = await startRedisServer();
});
afterEach(async () => {
  closeStreams();
  await stopAllProcesses();
});
afterAll(async () => {
  await redis?.stop();
});

const startInstance = () => startProcess({ REDIS_URL: redis.url, RUN_LEASE_MS: String(LEASE_MS), KEEPALIVE_MS: '1000' });

const eventsOf = (reader: SseReader) => timelineEvents<TimelineEvent>(reader);

it('ends a run whose owner is killed (SIGKILL) with WORKFLOW_ERROR and done run_lost, streamed on the other instance', async () => {
  const [streaming, owner] = await Promise.all([startInstance(), startInstance()]);
  const sessionId = newSessionId();
  const reader = await follow(streaming.url, sessionId);
  expect((await executeAsync(owner.url, synthetic(sessionId, { events: 1000, interval_ms: 20 }))).status).toBe(202);
  await reader.waitFor(seqAtLeast(10), 10000, 'seq 10');

  expect(await owner.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
  // The contract's bound, counted from the kill (the owner renewed before it, so this is stricter).
  const done = await reader.waitFor(isNamed('done'), 3 * LEASE_MS, 'done within 3 × RUN_LEASE_MS of the kill');
  await reader.ended;

  const events = eventsOf(reader);
  expect(seqs(events)).toEqual(range(1, events.length));
  expect(events.filter((event) => event.type === 'WORKFLOW_ERROR')).toHaveLength(1);
  expect(events.at(-1)).toMatchObject({ type: 'WORKFLOW_ERROR', status: 'ERROR', details: { error: { code: 'run_lost' } } });
  expect(JSON.parse(done.data)).toEqual({ status: 'failed', error: { code: 'run_lost', message: expect.any(String) } });
  expect(new Set(events.map((event) => event.event_id)).size).toBe(events.length);

  const history = await request(`${streaming.url}/timeline/${sessionId}`);
  expect(history.json.status).toBe('failed');
  expect(history.json.done.id).toBe(done.id);
  expect(streaming.child.exitCode).toBeNull();
});

it('resumes on another instance with Last-Event-ID when the instance serving the stream is killed: no gap, no duplicate', async () => {
  const [streaming, owner] = await Promise.all([startInstance(), startInstance()]);
  const sessionId = newSessionId();
  const first = await follow(streaming.url, sessionId);
  expect((await executeAsync(owner.url, synthetic(sessionId, { events: 150, interval_ms: 10 }))).status).toBe(202);
  await first.waitFor(seqAtLeast(20), 10000, 'seq 20');

  await streaming.stop('SIGKILL');
  await first.ended;
  const lastId = eventsOf(first).at(-1)?.event_id as string;

  const second = await follow(owner.url, sessionId, { 'Last-Event-ID': lastId });
  const done = await second.waitFor(isNamed('done'), 15000, 'done on the surviving instance');
  expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 150 } });
  const all = [...eventsOf(first), ...eventsOf(second)];
  expect(seqs(all)).toEqual(range(1, 152));
  expect(new Set(all.map((event) => event.event_id)).size).toBe(152);
  expect([...first.frames, ...second.frames].filter(isNamed('gap'))).toEqual([]);
});

/**
 * Checks one client's view of a session: events in strictly increasing seq, each once; any
 * seq missing must sit behind an explicit `gap` frame; `done` last. Returns the gaps.
 */
function expectEveryEventOnceOrGap(frames: SseFrame[]): SseFrame[] {
  const body = frames.filter((frame) => frame.event !== 'ready');
  expect(body.at(-1)?.event).toBe('done');
  let expected = 1;
  let gapPending = false;
  for (const frame of body.slice(0, -1)) {
    if (frame.event === 'gap') {
      gapPending = true;
      continue;
    }
    expect(frame.event).toBeUndefined();
    const event = JSON.parse(frame.data) as TimelineEvent;
    if (gapPending) {
      expect(event.seq).toBeGreaterThanOrEqual(expected);
      expect(JSON.parse(body.find(isNamed('gap'))?.data ?? '{}').first_available).toBe(event.event_id);
      gapPending = false;
    } else {
      expect(event.seq).toBe(expected);
    }
    expected = event.seq + 1;
  }
  return body.filter(isNamed('gap'));
}

it('gets every client through a Redis restart that loses everything: each event once or an explicit gap, then done', async () => {
  const [streaming, owner] = await Promise.all([startInstance(), startInstance()]);
  const sessionId = newSessionId();
  const live = await follow(streaming.url, sessionId);
  const early = await follow(owner.url, sessionId);
  expect((await executeAsync(owner.url, synthetic(sessionId, { events: 150, interval_ms: 20 }))).status).toBe(202);
  await early.waitFor(seqAtLeast(5), 10000, 'seq 5 for the early client');
  early.destroy(); // this client drops out before the restart and comes back after it
  await live.waitFor(seqAtLeast(20), 10000, 'seq 20 before the restart');

  await redis.restart();
  const admin = redis.admin();
  // The owner re-created the session on the empty Redis, marking what it had to give up.
  await waitUntil(async () => (await admin.hget(`timeline:{${sessionId}}:meta`, 'lost')) !== null, {
    timeoutMs: 15000,
    label: 'the owner to re-create its session',
  });
  const lost = (await admin.hget(`timeline:{${sessionId}}:meta`, 'lost')) as string;

  const liveDone = await live.waitFor(isNamed('done'), 20000, 'done on the stream that stayed open');
  expect(JSON.parse(liveDone.data)).toEqual({ status: 'completed', result: { events: 150 } });
  const liveGaps = expectEveryEventOnceOrGap(live.frames);
  // A gap only for a client that had not seen the owner's last event before the loss.
  expect(liveGaps.length > 0).toBe(!eventsOf(live).some((event) => event.event_id === lost));

  const earlyLastId = eventsOf(early).at(-1)?.event_id as string;
  const resumed = await follow(streaming.url, sessionId, { 'Last-Event-ID': earlyLastId });
  const resumedDone = await resumed.waitFor(isNamed('done'), 10000, 'done for the early client');
  expect(resumedDone.id).toBe(liveDone.id);
  const gaps = expectEveryEventOnceOrGap([...early.frames, ...resumed.frames.filter((frame) => frame.event !== 'ready')]);
  expect(gaps).toHaveLength(1);
  expect(JSON.parse(gaps[0].data)).toMatchObject({ after: earlyLastId });
  // What the early client got after the gap is exactly what Redis still holds.
  const history = await request(`${streaming.url}/timeline/${sessionId}`);
  expect(eventsOf(resumed).map((event) => event.event_id)).toEqual(
    history.json.events.map((event: TimelineEvent) => event.event_id),
  );
  expect(streaming.child.exitCode).toBeNull();
  expect(owner.child.exitCode).toBeNull();
});
