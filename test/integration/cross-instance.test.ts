import type { Config } from '../../server/config';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { RedisBus } from '../../server/timeline/redis-bus';
import { cancelSession, executeAsync, expectJsonError, getHistory, request } from '../helpers/api';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { execute, newSessionId, startRedisService, startService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, openSse, timelineEvents, type SseReader, seqAtLeast, streamFollower } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil } from '../helpers/wait';

type Ev = { event_id: string; seq: number; type: string };

/** Two instances of the service on one Redis, in this process, as behind a load balancer. */
describe('two instances on one Redis', () => {
  let redis: RedisServer;
  let a: RunningService;
  let b: RunningService;

  beforeAll(async () => {
    redis = await startRedisServer();
    // Both selected by REDIS_URL, as `npm start` does; a fast reconnect for the restart tests.
    [a, b] = await Promise.all([startInstance(), startInstance()]);
  });
  const streams = streamFollower();
  afterEach(() => streams.closeAll());
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.stop();
  });

  const startInstance = (overrides: Partial<Config> = {}) =>
    startRedisService(redis.url, { keepAliveMs: null, ...overrides });

  const streamUrl = (svc: RunningService, sessionId: string) => `${svc.url}/timeline/stream/${sessionId}`;

  const follow = (svc: RunningService, sessionId: string, headers: Record<string, string> = {}) =>
    streams.follow(svc.url, sessionId, headers);

  const seqsOf = (reader: SseReader) => seqs(timelineEvents<Ev>(reader));

  it('selects the Redis bus when REDIS_URL is set, and the memory bus when it is not', async () => {
    const onRedis = await startService({ redisUrl: redis.url });
    const inMemory = await startService();
    try {
      expect(onRedis.service.bus).toBeInstanceOf(RedisBus);
      expect(inMemory.service.bus).toBeInstanceOf(MemoryBus);
      expect((await request(`${onRedis.url}/readyz`)).status).toBe(200);
    } finally {
      await Promise.all([onRedis.close(), inMemory.close()]);
    }
  });

  it('streams on one instance a run executing on the other: every event once, in order, then done', async () => {
    const sessionId = newSessionId();
    const reader = await follow(a, sessionId);
    const response = await execute(b.url, synthetic(sessionId, { events: 40, interval_ms: 2 }));
    expect(response.status).toBe(200);
    const done = await reader.waitFor(isNamed('done'));
    await reader.ended;
    expect(seqsOf(reader)).toEqual(range(1, 42));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 40 } });
    expect(response.body.event_count).toBe(42);
    const history = await getHistory(a.url, sessionId);
    expect(history.json.events.map((event: Ev) => event.event_id)).toEqual(timelineEvents<Ev>(reader).map((e) => e.event_id));
    expect(history.json.done?.id).toBe(done.id);
  });

  it('replays a finished run to a late reader on the other instance, and answers 204 after done', async () => {
    const sessionId = newSessionId();
    expect((await execute(a.url, synthetic(sessionId, { events: 10 }))).status).toBe(200);
    const reader = await openSse(streamUrl(b, sessionId));
    const done = await reader.waitFor(isNamed('done'));
    await reader.ended;
    expect(JSON.parse(reader.frames[0].data)).toEqual({ session_id: sessionId, status: 'completed' });
    expect(seqsOf(reader)).toEqual(range(1, 12));
    const again = await openSse(streamUrl(a, sessionId), { headers: { 'Last-Event-ID': done.id as string } });
    expect(again.status).toBe(204);
  });

  it('resumes on the other instance from Last-Event-ID with no gap and no duplicate', async () => {
    const sessionId = newSessionId();
    const first = await follow(a, sessionId);
    const run = execute(b.url, synthetic(sessionId, { events: 60, interval_ms: 10 }));
    await first.waitFor(seqAtLeast(15));
    first.destroy();
    const seen = timelineEvents<Ev>(first);
    const lastId = seen.at(-1)?.event_id as string;

    const second = await follow(b, sessionId, { 'Last-Event-ID': lastId });
    await second.waitFor(isNamed('done'));
    expect((await run).status).toBe(200);
    const all = [...seqsOf(first), ...seqsOf(second)];
    expect(all).toEqual(range(1, 62));
  });

  it('holds two Redis connections per instance however many streams are open', async () => {
    const admin = redis.admin();
    const named = async () =>
      ((await admin.client('LIST')) as string)
        .split('\n')
        .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
        .filter((name) => name.startsWith('timeline:'))
        .sort();
    const channels = async () => ((await admin.pubsub('CHANNELS', 'timeline:{*}:live')) as string[]).length;
    const before = await named();
    expect(before).toEqual(['timeline:commands', 'timeline:commands', 'timeline:subscriber', 'timeline:subscriber']);
    const channelsBefore = await channels();
    const readers = await Promise.all(Array.from({ length: 60 }, (_, i) => follow(i % 2 ? a : b, newSessionId())));
    expect(await named()).toEqual(before);
    expect(await channels()).toBe(channelsBefore + 60);
    for (const reader of readers) reader.destroy();
    await waitUntil(async () => (await channels()) === channelsBefore, {
      label: 'every session channel to be unsubscribed once its streams closed',
    });
  });

  it('lets exactly one of two instances start a session id; the other answers 409 session_conflict', async () => {
    for (let round = 0; round < 10; round++) {
      const sessionId = newSessionId();
      const body = synthetic(sessionId, { events: 1 });
      const responses = await Promise.all([executeAsync(a.url, body), executeAsync(b.url, body)]);
      const statuses = responses.map((response) => response.status).sort();
      expect(statuses).toEqual([202, 409]);
      expectJsonError(responses.find((response) => response.status === 409)!, 409, 'session_conflict');
    }
  });

  it('cancels from one instance a run owned by the other', async () => {
    const sessionId = newSessionId();
    const reader = await follow(b, sessionId);
    const run = execute(b.url, synthetic(sessionId, { events: 1000, interval_ms: 10 }));
    await reader.waitFor(seqAtLeast(3));
    const cancel = await cancelSession(a.url, sessionId);
    expect(cancel.status).toBe(202);
    expect(cancel.json).toEqual({ session_id: sessionId, status: 'cancelling' });
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data).status).toBe('cancelled');
    expect(timelineEvents<Ev>(reader).at(-1)?.type).toBe('WORKFLOW_CANCELLED');
    const response = await run;
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('cancelled');
    expectJsonError(await cancelSession(a.url, sessionId), 409, 'session_finished');
    expectJsonError(await cancelSession(a.url, newSessionId()), 404, 'session_not_found');
  });

  it('keeps streaming across a Redis restart mid-run, then resumes on the other instance', async () => {
    const sessionId = newSessionId();
    const first = await follow(a, sessionId);
    const run = execute(b.url, synthetic(sessionId, { events: 80, interval_ms: 10 }));
    await first.waitFor(seqAtLeast(10));

    await redis.restart();
    await first.waitFor(seqAtLeast(40), 15000, 'events after the restart');
    first.destroy();
    const seenFirst = timelineEvents<Ev>(first);

    const second = await follow(b, sessionId, { 'Last-Event-ID': seenFirst.at(-1)?.event_id as string });
    const done = await second.waitFor(isNamed('done'), 15000);
    expect(JSON.parse(done.data).status).toBe('completed');
    expect((await run).status).toBe(200);
    const all = [...seqsOf(first), ...seqsOf(second)];
    expect(all).toEqual(range(1, 82));
    // Nothing the reader had not seen was lost, so there is no gap to announce.
    expect([...first.frames, ...second.frames].filter(isNamed('gap'))).toEqual([]);
    // The restart really emptied Redis mid-run: the owner had to re-create the session.
    const admin = redis.admin();
    expect(await admin.hget(`timeline:{${sessionId}}:meta`, 'lost')).toMatch(/^\d+-\d+$/);
  });

  it('reports not ready while Redis is down and ready again once it is back', async () => {
    expect((await request(`${a.url}/readyz`)).status).toBe(200);
    await redis.whileDown(async () => {
      const down = await request(`${a.url}/readyz`);
      expectJsonError(down, 503, 'not_ready');
      expect((await request(`${a.url}/healthz`)).status).toBe(200);
      const stream = await request(streamUrl(a, newSessionId()));
      expectJsonError(stream, 503, 'bus_unavailable');
    });
    await waitUntil(async () => (await request(`${a.url}/readyz`)).status === 200, { label: 'readyz after Redis is back' });
    await waitUntil(async () => (await request(`${b.url}/readyz`)).status === 200, { label: 'readyz of b' });
  });

  it('fails a run whose Redis stays down longer than BUS_OUTAGE_MS with 503 bus_unavailable, and lives on', async () => {
    const c = await startInstance({ busOutageMs: 300 });
    try {
      const sessionId = newSessionId();
      const reader = await follow(a, sessionId);
      const run = execute(c.url, synthetic(sessionId, { events: 500, interval_ms: 10 }));
      await reader.waitFor(seqAtLeast(5));
      const response = await redis.whileDown(() => run);
      expect(response.status).toBe(503);
      expect(response.body).toEqual({
        error: { code: 'bus_unavailable', message: expect.any(String) },
        session_id: sessionId,
      });
      await waitUntil(async () => (await request(`${c.url}/readyz`)).status === 200, { label: 'c ready again' });
      expect((await execute(c.url, synthetic(newSessionId(), { events: 2 }))).status).toBe(200);
    } finally {
      await c.close();
    }
  });
});
