import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type Redis from 'ioredis';
import type { LogEntry, TimelineBus } from '../../server/timeline/bus';
import type { GapPayload } from '../../client-sdk/src/types';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import { compareEventIds } from '../../server/timeline/event-id';
import { SessionFeed } from '../../server/timeline/session-feed';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { waitUntil } from '../helpers/wait';
import { draft, keepingUpSink } from '../helpers/timeline-fixtures';
import { describeBusBehaviour } from './bus-behaviour';

let redis: RedisServer;
let admin: Redis;
beforeAll(async () => {
  redis = await startRedisServer();
  admin = redis.admin();
});
afterAll(async () => {
  await redis?.stop();
});

/** A bus with its own key prefix, so tests sharing the server cannot see each other's keys. */
function redisBus(options: Partial<RedisBusOptions> = {}): RedisBus {
  return new RedisBus({
    url: redis.url,
    keyPrefix: `t${randomUUID().slice(0, 8)}:`,
    redis: { retryStrategy: () => 20 },
    ...options,
  });
}

describeBusBehaviour('RedisBus', async (options) => {
  const bus = redisBus(options);
  await bus.whenListening();
  return bus;
});

/** Redis clients whose name starts with `prefix` (our connections are named after the key prefix). */
async function clientsNamed(prefix: string): Promise<string[]> {
  const list = (await admin.client('LIST')) as string;
  return list
    .split('\n')
    .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
    .filter((name) => name.startsWith(prefix));
}

async function runningSession(bus: TimelineBus): Promise<string> {
  const sessionId = randomUUID();
  expect(await bus.claimRun(sessionId, 'owner', 10000)).toBe(true);
  return sessionId;
}

/**
 * A TCP proxy in front of a Redis that can drop its replies: commands still reach Redis and
 * run, but the client never hears back, as when Redis dies before its answer gets out.
 */
async function replyDroppingProxy(targetPort: number) {
  const control = { dropReplies: false };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      // A dropped connection is what this proxy is for.
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (!control.dropReplies) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    control,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

class Entries {
  readonly list: LogEntry[] = [];
  get ids(): string[] {
    return this.list.map((entry) => entry.id);
  }
}

describe('RedisBus (Redis only)', () => {
  const buses: RedisBus[] = [];
  const newBus = async (options: Partial<RedisBusOptions> = {}) => {
    const bus = redisBus(options);
    buses.push(bus);
    await bus.whenListening();
    return bus;
  };
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  it('uses two connections however many sessions are streamed, and subscribes each channel once', async () => {
    const prefix = `conn${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    const sessions = Array.from({ length: 50 }, () => randomUUID());
    const feeds = await Promise.all(
      sessions.flatMap((sessionId) => [SessionFeed.open(bus, sessionId, null), SessionFeed.open(bus, sessionId, null)]),
    );
    expect(feeds).toHaveLength(100);
    expect((await clientsNamed(prefix)).sort()).toEqual([`${prefix}commands`, `${prefix}subscriber`]);
    const channels = (await admin.pubsub('CHANNELS', `${prefix}*`)) as string[];
    expect(channels).toHaveLength(50); // one per session (cancel requests go to a run's owner only)
    expect(bus.subscribedSessionCount).toBe(50);
    expect(bus.listenerCount).toBe(100);

    const [firstReaders, secondReaders] = [feeds.filter((_, i) => i % 2 === 0), feeds.filter((_, i) => i % 2 === 1)];
    for (const feed of firstReaders) feed.close();
    expect(bus.subscribedSessionCount).toBe(50); // each session still has one reader
    for (const feed of secondReaders) feed.close();
    expect(bus.subscribedSessionCount).toBe(0);
    expect(bus.listenerCount).toBe(0);
    await waitUntil(async () => ((await admin.pubsub('CHANNELS', `${prefix}*`)) as string[]).length === 0, {
      label: 'Redis to drop the session channels',
    });
  });

  it('sets the TTL on every key of a session', async () => {
    const prefix = `ttl${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix, eventTtlS: 120 });
    const sessionId = await runningSession(bus);
    await bus.publish(sessionId, draft(sessionId, 1));
    await bus.signalDone(sessionId, { status: 'completed' });
    const keys = await admin.keys(`${prefix}*`);
    expect(keys.sort()).toEqual([`${prefix}{${sessionId}}:log`, `${prefix}{${sessionId}}:meta`]);
    for (const key of keys) {
      const ttl = await admin.ttl(key);
      expect(ttl).toBeGreaterThan(100);
      expect(ttl).toBeLessThanOrEqual(120);
    }
  });

  it('uses the Redis Stream id as the event id', async () => {
    const prefix = `ids${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    const sessionId = await runningSession(bus);
    const id = await bus.publish(sessionId, draft(sessionId, 1));
    const raw = (await admin.xrange(`${prefix}{${sessionId}}:log`, '-', '+')) as Array<[string, string[]]>;
    expect(raw.map(([streamId]) => streamId)).toEqual([id]);
    const [entry] = (await bus.read(sessionId, null)).entries;
    expect(JSON.parse(entry.data)).toEqual({ event_id: id, ...draft(sessionId, 1) });
  });

  it('delivers to a second instance what the first publishes, live and by replay', async () => {
    const a = await newBus({ keyPrefix: 'shared-ab:' });
    const b = await newBus({ keyPrefix: 'shared-ab:' });
    const sessionId = await runningSession(a);
    const first = await a.publish(sessionId, draft(sessionId, 1));
    const live = new Entries();
    await b.subscribe(sessionId, { onEntry: (entry) => live.list.push(entry) });
    const second = await a.publish(sessionId, draft(sessionId, 2));
    const doneId = await a.signalDone(sessionId, { status: 'completed' });
    await waitUntil(() => live.list.length === 2, { label: 'live entries on the other instance' });
    expect(live.ids).toEqual([second, doneId]);
    expect((await b.read(sessionId, null)).entries.map((entry) => entry.id)).toEqual([first, second, doneId]);
    expect(await b.claimRun(sessionId, 'other-owner', 10000)).toBe(false);
  });

  it('sends a cancel request to the instance that owns the run', async () => {
    const owner = await newBus({ keyPrefix: 'shared-cancel:' });
    const other = await newBus({ keyPrefix: 'shared-cancel:' });
    const sessionId = await runningSession(owner);
    const heard: string[] = [];
    const stop = owner.onCancelRequest((id) => heard.push(id));
    expect(await other.requestCancel(sessionId)).toBe('cancelling');
    await waitUntil(() => heard.length === 1, { label: 'the owner to hear the cancel' });
    expect(heard).toEqual([sessionId]);
    stop();
  });

  it('tells the owner of a pending cancel again at each lease renewal, in case the message was lost', async () => {
    const owner = await newBus({ keyPrefix: 'shared-missed:' });
    const other = await newBus({ keyPrefix: 'shared-missed:' });
    const sessionId = await runningSession(owner);
    const heard: string[] = [];
    owner.onCancelRequest((id) => heard.push(id));
    expect(await owner.renewLease(sessionId, 'owner', 10000)).toBe(true);
    expect(heard).toEqual([]);
    expect(await other.requestCancel(sessionId)).toBe('cancelling');
    await waitUntil(() => heard.length === 1, { label: 'the pub/sub cancel' });
    expect(await owner.renewLease(sessionId, 'owner', 10000)).toBe(true);
    expect(heard).toEqual([sessionId, sessionId]);
  });

  it('rejects with bus_unavailable and fails readiness while Redis is unreachable', async () => {
    const bus = redisBus({ url: 'redis://127.0.0.1:1', redis: { retryStrategy: () => 50, maxRetriesPerRequest: 0 } });
    buses.push(bus);
    await expect(bus.ping()).rejects.toMatchObject({ code: 'bus_unavailable' });
    await expect(bus.read(randomUUID(), null)).rejects.toMatchObject({ code: 'bus_unavailable' });
  });

  describe('a lost pub/sub connection', () => {
    it('resubscribes and re-reads, so a feed misses nothing published while the subscriber was away', async () => {
      const prefix = `kill${randomUUID().slice(0, 8)}:`;
      // A slow reconnect, so the publishes below happen while the subscriber is gone.
      const bus = await newBus({ keyPrefix: prefix, redis: { retryStrategy: () => 300 } });
      const sessionId = await runningSession(bus);
      const before = [await bus.publish(sessionId, draft(sessionId, 1))];
      const feed = await SessionFeed.open(bus, sessionId, null);
      const received = new Entries();
      let gaps = 0;
      feed.start(keepingUpSink({ entry: (entry) => received.list.push(entry), gap: () => gaps++, failed: (error) => { throw error; } }));
      await waitUntil(() => received.list.length === 1, { label: 'the first event' });

      expect(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBeGreaterThanOrEqual(1);
      const during: string[] = [];
      for (let seq = 2; seq <= 6; seq++) during.push(await bus.publish(sessionId, draft(sessionId, seq)));
      await waitUntil(async () => ((await admin.pubsub('NUMSUB', `${prefix}{${sessionId}}:live`)) as [string, number])[1] === 1, {
        label: 'the subscriber to come back',
      });
      const after = [await bus.publish(sessionId, draft(sessionId, 7))];
      const doneId = (await bus.signalDone(sessionId, { status: 'completed' })) as string;
      await waitUntil(() => received.list.some((entry) => entry.kind === 'done'), { label: 'done after the reconnect' });
      feed.close();
      expect(received.ids).toEqual([...before, ...during, ...after, doneId]);
      expect(gaps).toBe(0);
    });
  });

  it('appends a resent event once: the same seq again answers the id it already has', async () => {
    const bus = await newBus();
    const sessionId = await runningSession(bus);
    const first = await bus.publish(sessionId, draft(sessionId, 1));
    expect(await bus.publish(sessionId, draft(sessionId, 1))).toBe(first);
    await expect(bus.publish(sessionId, draft(sessionId, 0))).rejects.toThrow('already published');
    const second = await bus.publish(sessionId, draft(sessionId, 2));
    expect((await bus.read(sessionId, null)).entries.map((entry) => entry.id)).toEqual([first, second]);
  });

  describe('a Redis restart that loses everything (no persistence)', () => {
    let own: RedisServer;
    beforeAll(async () => {
      own = await startRedisServer();
    });
    afterAll(async () => {
      await own?.stop();
    });

    it('lets the owner go on, with later ids, and tells only readers that missed something of the gap', async () => {
      const owner = await newBus({ url: own.url, keyPrefix: 'lost:' });
      const other = await newBus({ url: own.url, keyPrefix: 'lost:' });
      const sessionId = await runningSession(owner);
      const before = [];
      for (let seq = 1; seq <= 3; seq++) before.push(await owner.publish(sessionId, draft(sessionId, seq)));

      await own.restart();
      expect((await own.admin().keys('*')).length).toBe(0);

      expect(await other.renewLease(sessionId, 'owner', 10000)).toBe(false); // not its run
      const after = await owner.publish(sessionId, draft(sessionId, 4));
      expect(compareEventIds(after, before[2])).toBeGreaterThan(0);
      expect(await owner.renewLease(sessionId, 'owner', 10000)).toBe(true);

      expect(await other.read(sessionId, null)).toMatchObject({ status: 'running', gap: { after: null, first_available: after } });
      expect(await other.read(sessionId, before[1])).toMatchObject({ gap: { after: before[1], first_available: after } });
      const caughtUp = await other.read(sessionId, before[2]);
      expect(caughtUp.gap).toBeNull();
      expect(caughtUp.entries.map((entry) => entry.id)).toEqual([after]);

      const doneId = await owner.signalDone(sessionId, { status: 'completed' });
      expect(doneId).not.toBeNull();
      expect(await other.claimRun(sessionId, 'late', 10000)).toBe(false);
      expect((await other.read(sessionId, after)).entries.map((entry) => entry.id)).toEqual([doneId]);
    });

    it('delivers an event once when its owner sends it again to a Redis that restarted after fanning it out', async () => {
      const proxy = await replyDroppingProxy(own.port);
      try {
        const owner = await newBus({ url: proxy.url, keyPrefix: 'resent:' });
        const reader = await newBus({ url: own.url, keyPrefix: 'resent:' });
        const sessionId = await runningSession(owner);
        const feed = await SessionFeed.open(reader, sessionId, null);
        const received = new Entries();
        const gaps: GapPayload[] = [];
        const failures: unknown[] = [];
        feed.start(keepingUpSink({ entry: (entry) => received.list.push(entry), gap: (gap) => gaps.push(gap), failed: (error) => failures.push(error) }));
        const before = [];
        for (let seq = 1; seq <= 3; seq++) before.push(await owner.publish(sessionId, draft(sessionId, seq)));

        // Redis appends seq 4 and fans it out, then dies before the owner hears back.
        proxy.control.dropReplies = true;
        const resent = owner.publish(sessionId, draft(sessionId, 4));
        await waitUntil(() => received.list.length === 4, { label: 'seq 4 to reach the reader live' });
        const firstId = received.list[3].id;
        await own.kill();
        proxy.control.dropReplies = false;
        await own.start();

        // The owner's resend lands in the empty Redis under a later id: the same event twice.
        const secondId = await resent;
        expect(compareEventIds(secondId, firstId)).toBeGreaterThan(0);
        expect((await reader.read(sessionId, firstId)).entries.map((entry) => entry.seq)).toEqual([4]);

        const after = await owner.publish(sessionId, draft(sessionId, 5));
        const doneId = (await owner.signalDone(sessionId, { status: 'completed' })) as string;
        await waitUntil(() => received.list.some((entry) => entry.kind === 'done'), { label: 'done after the restart' });
        feed.close();
        expect(received.ids).toEqual([...before, firstId, after, doneId]);
        expect(received.list.map((entry) => entry.kind === 'event' && (JSON.parse(entry.data) as { seq: number }).seq)).toEqual([1, 2, 3, 4, 5, false]);
        expect(gaps).toEqual([]);
        expect(failures).toEqual([]);
      } finally {
        await proxy.close();
      }
    });
  });

  describe('a failover to a replica that missed the newest writes (replication is asynchronous)', () => {
    /**
     * Rolls a session back to what a replica holding only its first `keep` events would have:
     * the log re-made with those entries (ids kept), `seq` and `last` pointing at the last one.
     */
    async function rollBack(prefix: string, sessionId: string, keep: number): Promise<void> {
      const log = `${prefix}{${sessionId}}:log`;
      const meta = `${prefix}{${sessionId}}:meta`;
      const entries = ((await admin.xrange(log, '-', '+')) as Array<[string, string[]]>).slice(0, keep);
      const ttl = await admin.ttl(log);
      await admin.del(log);
      for (const [id, fields] of entries) await admin.xadd(log, id, ...fields);
      await admin.expire(log, ttl);
      await admin.hset(meta, 'seq', keep, 'last', entries[keep - 1][0]);
    }

    it('marks the loss at the owner\'s next event: readers that missed events get a gap where it is, live readers none', async () => {
      const prefix = `lag${randomUUID().slice(0, 8)}:`;
      const owner = await newBus({ keyPrefix: prefix });
      const reader = await newBus({ keyPrefix: prefix });
      const sessionId = await runningSession(owner);
      const published: string[] = [];
      for (let seq = 1; seq <= 5; seq++) published.push(await owner.publish(sessionId, draft(sessionId, seq)));
      const live = await SessionFeed.open(reader, sessionId, null);
      const seen = new Entries();
      const liveGaps: GapPayload[] = [];
      live.start(keepingUpSink({ entry: (entry) => seen.list.push(entry), gap: (gap) => liveGaps.push(gap), failed: (error) => { throw error; } }));
      await waitUntil(() => seen.list.length === 5, { label: 'the five events' });

      await rollBack(prefix, sessionId, 3);
      const after = await owner.publish(sessionId, draft(sessionId, 6));
      expect(compareEventIds(after, published[4])).toBeGreaterThan(0);

      // A reader from the start gets what is left before the loss, then the gap, then the rest.
      const calls: string[] = [];
      const late = await SessionFeed.open(reader, sessionId, null, { pageSize: 10 });
      late.start(
        keepingUpSink({
          entry: (entry) => calls.push(entry.id),
          gap: (gap) => calls.push(`gap ${gap.after} ${gap.first_available}`),
          failed: (error) => { throw error; },
        }),
      );
      await waitUntil(() => calls.includes(after), { label: 'the late reader to reach the new event' });
      late.close();
      expect(calls).toEqual([...published.slice(0, 3), `gap ${published[2]} ${after}`, after]);
      // Positioned inside the loss: the gap at once. Past it: nothing missed.
      expect(await reader.read(sessionId, published[3], 10)).toMatchObject({ gap: { after: published[3], first_available: after } });
      expect(await reader.read(sessionId, published[4], 10)).toMatchObject({ gap: null, entries: [{ id: after }] });

      // The live reader had every event: it goes on without a gap or a duplicate.
      const doneId = (await owner.signalDone(sessionId, { status: 'completed' })) as string;
      await waitUntil(() => seen.list.some((entry) => entry.kind === 'done'), { label: 'done on the live feed' });
      live.close();
      expect(seen.ids).toEqual([...published, after, doneId]);
      expect(liveGaps).toEqual([]);
    });

    it('marks the loss before done when the owner\'s last events were lost', async () => {
      const prefix = `lagdone${randomUUID().slice(0, 8)}:`;
      const owner = await newBus({ keyPrefix: prefix });
      const sessionId = await runningSession(owner);
      const published: string[] = [];
      for (let seq = 1; seq <= 4; seq++) published.push(await owner.publish(sessionId, draft(sessionId, seq)));
      await rollBack(prefix, sessionId, 2);
      const doneId = (await owner.signalDone(sessionId, { status: 'completed' })) as string;
      expect(compareEventIds(doneId, published[3])).toBeGreaterThan(0);
      const slice = await owner.read(sessionId, published[1]);
      expect(slice).toMatchObject({ status: 'completed', gap: { after: published[1], first_available: doneId } });
      expect(slice.entries.map((entry) => entry.id)).toEqual([doneId]);
    });
  });
});
