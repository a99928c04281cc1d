import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import type { TimelineEvent } from '../../client-sdk/src/types';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import { getHistory } from '../helpers/api';
import { freePort } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { execute, newSessionId, startRedisService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents } from '../helpers/sse-reader';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';
import { draft, range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil, within } from '../helpers/wait';

/**
 * Run owner death on a real redis-server: the owner stops renewing its lease (it died, or was
 * cut from Redis), and the instances still up end its run with `WORKFLOW_ERROR` and `done`
 * `failed` / `run_lost`, once, within 3 × RUN_LEASE_MS, streamed or not.
 */

let redis: RedisServer;
let admin: Redis;
const buses: RedisBus[] = [];
const services: RunningService[] = [];
const proxies: TcpProxy[] = [];
const streams = streamFollower();

beforeAll(async () => {
  redis = await startRedisServer();
  admin = redis.admin();
});
afterEach(async () => {
  streams.closeAll();
  await Promise.all([...buses.splice(0).map((bus) => bus.close()), ...services.splice(0).map((svc) => svc.close())]);
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});
afterAll(async () => {
  await redis?.stop();
});

const newPrefix = () => `od${randomUUID().slice(0, 8)}:`;

async function newBus(options: Partial<RedisBusOptions>): Promise<RedisBus> {
  const bus = new RedisBus({ url: redis.url, redis: { retryStrategy: () => 20 }, ...options });
  buses.push(bus);
  await bus.whenListening();
  return bus;
}

/** An owner that claims a session, publishes `events` events and then dies: it never renews and never writes done. */
async function ownerDiesAfter(prefix: string, leaseMs: number, events: number): Promise<{ sessionId: string; diedAt: number }> {
  const owner = new RedisBus({ url: redis.url, keyPrefix: prefix, runLeaseMs: 60_000 });
  const sessionId = randomUUID();
  try {
    expect(await owner.claimRun(sessionId, `owner-${sessionId}`, leaseMs)).toBe(true);
    for (let seq = 1; seq <= events; seq++) await owner.publish(sessionId, draft(sessionId, seq));
  } finally {
    await owner.close();
  }
  return { sessionId, diedAt: Date.now() };
}

type Ev = TimelineEvent;

function expectRunLostEnding(events: Ev[], done: unknown, ownerEvents: number): void {
  expect(seqs(events)).toEqual(range(1, ownerEvents + 1));
  const errors = events.filter((event) => event.type === 'WORKFLOW_ERROR');
  expect(errors).toHaveLength(1);
  expect(events.at(-1)).toMatchObject({
    type: 'WORKFLOW_ERROR',
    status: 'ERROR',
    seq: ownerEvents + 1,
    details: { error: { code: 'run_lost', message: expect.any(String) } },
  });
  expect(done).toMatchObject({ status: 'failed', error: { code: 'run_lost', message: expect.any(String) } });
}

describe('run owner death', () => {
  it('ends an expired run exactly once when several instances sweep at the same moment (over several rounds)', async () => {
    const leaseMs = 200;
    const prefix = newPrefix();
    // Their own sweep timers race too, every 50..100 ms, besides the explicit sweeps below.
    const sweepers = await Promise.all(Array.from({ length: 4 }, () => newBus({ keyPrefix: prefix, runLeaseMs: leaseMs })));
    for (let round = 0; round < 6; round++) {
      const dead = await Promise.all(Array.from({ length: 3 }, (_, i) => ownerDiesAfter(prefix, leaseMs, i + 1)));
      await waitUntil(async () => (await admin.exists(...dead.map(({ sessionId }) => `${prefix}{${sessionId}}:lease`))) === 0, {
        label: 'the dead owners’ leases to expire',
        intervalMs: 2,
      });
      const ended = (await Promise.all(sweepers.map((bus) => bus.sweepExpiredRuns()))).flat();
      expect(new Set(ended).size).toBe(ended.length);

      for (const [i, { sessionId }] of dead.entries()) {
        await waitUntil(async () => (await sweepers[0].read(sessionId, null)).status === 'failed', {
          label: `round ${round}: session ${i} ended`,
        });
        const slice = await sweepers[1].read(sessionId, null);
        const events = slice.entries.filter((entry) => entry.kind === 'event').map((entry) => JSON.parse(entry.data) as Ev);
        const dones = slice.entries.filter((entry) => entry.kind === 'done');
        expect(dones).toHaveLength(1);
        expect(slice.entries.at(-1)?.kind).toBe('done');
        expectRunLostEnding(events, JSON.parse(dones[0].data), i + 1);
        expect(events.every((event) => event.session_id === sessionId && event.event_id !== undefined)).toBe(true);
      }
      // Nothing is left in the run index once every run ended (Redis drops an emptied bucket).
      expect(await admin.keys(`${prefix}running:*`)).toEqual([]);
    }
  });

  it('leaves a run whose owner keeps renewing alone', async () => {
    const leaseMs = 200;
    const prefix = newPrefix();
    const [owner, other] = await Promise.all([newBus({ keyPrefix: prefix, runLeaseMs: leaseMs }), newBus({ keyPrefix: prefix, runLeaseMs: leaseMs })]);
    const sessionId = randomUUID();
    expect(await owner.claimRun(sessionId, 'owner', leaseMs)).toBe(true);
    await owner.publish(sessionId, draft(sessionId, 1));
    // Four leases long, renewed at a third of it as the run manager does; both sweep meanwhile.
    for (let i = 0; i < 12; i++) {
      await new Promise((resolve) => setTimeout(resolve, leaseMs / 3));
      expect(await owner.renewLease(sessionId, 'owner', leaseMs)).toBe(true);
      expect(await other.sweepExpiredRuns()).toEqual([]);
    }
    expect((await other.read(sessionId, null)).status).toBe('running');
    expect(await owner.signalDone(sessionId, { status: 'completed' })).not.toBeNull();
  });

  it('ends the run of a dead owner that nobody streams, within 3 × the lease; history and a late stream show it', async () => {
    const leaseMs = 1000;
    const prefix = newPrefix();
    const svc = await startRedisService(redis.url, { runLeaseMs: leaseMs, keepAliveMs: null }, { keyPrefix: prefix });
    services.push(svc);
    const { sessionId, diedAt } = await ownerDiesAfter(prefix, leaseMs, 3);

    // The bound is the contract's, from the owner's last renewal (its claim): no stream is open.
    await waitUntil(async () => (await getHistory(svc.url, sessionId)).json?.done != null, {
      timeoutMs: 3 * leaseMs - (Date.now() - diedAt),
      intervalMs: 20,
      label: 'done run_lost within 3 × RUN_LEASE_MS',
    });
    const history = (await getHistory(svc.url, sessionId)).json;
    expect(history.status).toBe('failed');
    expectRunLostEnding(history.events, history.done, 3);

    const late = await streams.follow(svc.url, sessionId);
    const done = await late.waitFor(isNamed('done'));
    expectRunLostEnding(timelineEvents<Ev>(late), JSON.parse(done.data), 3);
    expect(done.id).toBe(history.done?.id);
  });

  it('stops an owner that was cut from Redis longer than its lease: its run aborts and it writes no second done', async () => {
    const leaseMs = 600;
    const prefix = newPrefix();
    const proxy = await startTcpProxy(redis.port);
    proxies.push(proxy);
    // The owner reaches Redis through the proxy; its queued writes wait for it up to ~50 s.
    const owner = await startRedisService(
      `redis://127.0.0.1:${proxy.port}`,
      { runLeaseMs: leaseMs, keepAliveMs: null },
      { keyPrefix: prefix, redis: { retryStrategy: () => 50, maxRetriesPerRequest: 1000 } },
    );
    const observer = await startRedisService(redis.url, { runLeaseMs: leaseMs, keepAliveMs: null }, { keyPrefix: prefix });
    services.push(owner, observer);

    const sessionId = newSessionId();
    const reader = await streams.follow(observer.url, sessionId);
    // Two events a minute apart: cut off while it waits, only its lease renewal can tell the
    // owner the session is gone.
    const run = execute(owner.url, synthetic(sessionId, { events: 2, interval_ms: 60_000 }));
    await reader.waitFor(seqAtLeast(2));

    // Cut: the owner's connections drop and every reconnect is refused.
    proxy.setTarget(await freePort());
    proxy.cutAll();
    const done = await reader.waitFor(isNamed('done'), 3 * leaseMs + 5000, 'done run_lost from the observer’s sweep');
    const streamed = timelineEvents<Ev>(reader);
    expectRunLostEnding(streamed, JSON.parse(done.data), 2);
    expect(owner.service.runs.activeCount).toBe(1); // still running, cut off: it cannot know yet

    // Back: the owner learns it lost the session (renewal or publish) and stops.
    proxy.setTarget(redis.port);
    const response = await within(run, 10000, 'the owner’s run to stop');
    expect(response.status).toBe(500);
    expect(response.body).toMatchObject({ error: { code: 'internal_error' }, session_id: sessionId });
    expect(owner.service.runs.activeCount).toBe(0);

    // The log holds the sweeper's ending and nothing of the owner after it.
    const history = (await getHistory(observer.url, sessionId)).json;
    expect(history.done).toEqual({ id: done.id, ...JSON.parse(done.data) });
    expect(history.events.map((event: Ev) => event.event_id)).toEqual(streamed.map((event) => event.event_id));
    const raw = (await admin.xrange(`${prefix}{${sessionId}}:log`, '-', '+')) as Array<[string, string[]]>;
    expect(raw.filter(([, fields]) => fields[0] === 'd')).toHaveLength(1);
  });
});

describe('writes while Redis is away', () => {
  it('bounds what waits for Redis: beyond the cap a publish fails at once with bus_unavailable', async () => {
    const prefix = newPrefix();
    const proxy = await startTcpProxy(redis.port);
    proxies.push(proxy);
    const one = JSON.stringify(draft(randomUUID(), 1)).length;
    const bus = new RedisBus({
      url: `redis://127.0.0.1:${proxy.port}`,
      keyPrefix: prefix,
      maxPendingWriteBytes: one * 5.5,
      redis: { retryStrategy: () => 20, maxRetriesPerRequest: 1000 },
    });
    buses.push(bus);
    await bus.whenListening();
    const sessions = Array.from({ length: 7 }, () => randomUUID());
    for (const sessionId of sessions) expect(await bus.claimRun(sessionId, 'owner', 60_000)).toBe(true);

    proxy.setTarget(await freePort());
    proxy.cutAll();
    // One publish per run in flight (a run awaits each), seven runs: five fit, two do not.
    const outcomes = sessions.map((sessionId) => bus.publish(sessionId, draft(sessionId, 1)));
    const settled = outcomes.map((outcome) => outcome.then(() => 'ok', (error: { code?: string }) => error.code ?? 'other'));
    await expect(within(settled[5], 1000, 'the sixth publish to fail at once')).resolves.toBe('bus_unavailable');
    await expect(settled[6]).resolves.toBe('bus_unavailable');

    proxy.setTarget(redis.port);
    expect(await within(Promise.all(settled.slice(0, 5)), 10000, 'the queued publishes')).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(await bus.publish(sessions[5], draft(sessions[5], 1))).toMatch(/^\d+-\d+$/);
  });

  it('writes the done of a run that outlived BUS_OUTAGE_MS once Redis is back, even empty, and announces the gap', async () => {
    const own = await startRedisServer();
    try {
      const svc = await startRedisService(own.url, { busOutageMs: 300, runLeaseMs: 1000, keepAliveMs: null });
      services.push(svc);
      const sessionId = newSessionId();
      const live = await streams.follow(svc.url, sessionId);
      const early = await streams.follow(svc.url, sessionId);
      const run = execute(svc.url, synthetic(sessionId, { events: 500, interval_ms: 10 }));
      await early.waitFor(seqAtLeast(3));
      early.destroy(); // a client that drops out early and comes back after the outage
      await live.waitFor(seqAtLeast(8));
      const response = await own.whileDown(() => run);
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('bus_unavailable');

      // The stream that stayed open gets the done the owner held back; it missed nothing it
      // is not told of.
      const done = await live.waitFor(isNamed('done'), 10000, 'the held-back done');
      expect(JSON.parse(done.data)).toMatchObject({ status: 'failed', error: { code: 'bus_unavailable' } });
      const lost = (await own.admin().hget(`timeline:{${sessionId}}:meta`, 'lost')) as string;
      expect(lost).toMatch(/^\d+-\d+$/); // Redis really came back empty
      const seen = timelineEvents<Ev>(live);
      expect(seqs(seen)).toEqual(range(1, seen.length));
      const sawLast = seen.some((event) => event.event_id === lost);
      expect(live.frames.some(isNamed('gap'))).toBe(!sawLast);

      // The early client resumes after what Redis lost: an explicit gap, then done.
      const lastId = timelineEvents<Ev>(early).at(-1)?.event_id as string;
      const resumed = await streams.follow(svc.url, sessionId, { 'Last-Event-ID': lastId });
      const resumedDone = await resumed.waitFor(isNamed('done'));
      expect(resumedDone.id).toBe(done.id);
      expect(resumed.frames.filter((frame) => frame.event !== 'ready').map((frame) => frame.event)).toEqual(['gap', 'done']);
      expect(JSON.parse(resumed.frames[1].data)).toMatchObject({ after: lastId });
    } finally {
      await own.stop();
    }
  });
});

describe('a Redis restart that loses everything', () => {
  it('tells a live reader to read again when the owner re-creates the session, before any newer entry', async () => {
    const own = await startRedisServer();
    try {
      const prefix = newPrefix();
      const onOwn = { url: own.url, keyPrefix: prefix };
      const [owner, other] = await Promise.all([newBus(onOwn), newBus(onOwn)]);
      const sessionId = randomUUID();
      expect(await owner.claimRun(sessionId, 'owner', 60_000)).toBe(true);
      for (let seq = 1; seq <= 3; seq++) await owner.publish(sessionId, draft(sessionId, seq));
      const heard: string[] = [];
      await other.subscribe(sessionId, {
        onEntry: (entry) => heard.push(entry.id),
        onResync: () => heard.push('resync'),
      });

      await own.restart();
      // The reconnect's own resync: a reader re-reading now finds an empty log, no gap to tell.
      await waitUntil(() => heard.includes('resync'), { label: 'the resync after the reconnect' });
      expect((await other.read(sessionId, null)).status).toBe('waiting');

      const after = await owner.publish(sessionId, draft(sessionId, 4));
      await waitUntil(() => heard.includes(after), { label: 'the event after the restore' });
      // A second resync, before the new event: the re-read now sees the loss marker (a gap).
      expect(heard).toEqual(['resync', 'resync', after]);
      expect((await other.read(sessionId, null)).gap).toMatchObject({ after: null, first_available: after });
    } finally {
      await own.stop();
    }
  });
});
