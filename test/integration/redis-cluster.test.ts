import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import type { LogEntry } from '../../server/timeline/bus';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import { SessionFeed } from '../../server/timeline/session-feed';
import { runIndexBucket } from '../../server/timeline/run-index';
import { sessionKeys } from '../../server/timeline/session-keys';
import { commandCalls } from '../helpers/redis-server';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster';
import { startRedisService, type RunningService } from '../helpers/service';
import { streamFollower } from '../helpers/sse-reader';
import { draft, keepingUpSink } from '../helpers/timeline-fixtures';
import { waitUntil } from '../helpers/wait';
import { describeBusBehaviour } from './bus-behaviour';
import { expectRunsToSurviveFailover } from './failover-scenario';

/**
 * RedisBus on a real Redis Cluster (3 masters, 3 replicas, made by `redis-cli --cluster
 * create`, password-protected): the shared bus behaviour; a session's keys and channels on one
 * slot; events only as sharded pub/sub, on the session's shard; the run index over many slots;
 * a slot migration and a master's failover mid-run.
 */

const PASSWORD = 'cluster-secret';

let cluster: RedisCluster;
const buses: RedisBus[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster({ password: PASSWORD });
});
afterAll(async () => {
  await cluster?.stop();
});

function clusterBus(options: Partial<RedisBusOptions> = {}): RedisBus {
  return new RedisBus({
    cluster: { nodes: cluster.startupNodes.slice(0, 2), password: PASSWORD },
    keyPrefix: `c${randomUUID().slice(0, 8)}:`,
    redis: { retryStrategy: () => 20 },
    ...options,
  });
}

describeBusBehaviour('RedisBus on a Redis Cluster', async (options) => {
  const bus = clusterBus(options);
  await bus.whenListening();
  return bus;
});

async function masters(): Promise<number[]> {
  return (await cluster.topology()).filter((node) => node.role === 'master' && !node.failing && node.slots.length > 0).map((node) => node.port);
}

async function keySlot(admin: Redis, key: string): Promise<number> {
  return (await admin.call('CLUSTER', 'KEYSLOT', key)) as number;
}

describe('RedisBus on a Redis Cluster (cluster only)', () => {
  const newBus = async (options: Partial<RedisBusOptions> = {}) => {
    const bus = clusterBus(options);
    buses.push(bus);
    await bus.whenListening();
    return bus;
  };
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  it('keeps every key and channel of a session in the slot of its id, on the master serving it', async () => {
    const prefix = `slot${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    const sessionId = randomUUID();
    const admin = cluster.admin(cluster.ports[0]);
    const slot = await keySlot(admin, sessionId);

    // Everything a session goes through: caller binding, claim, stream, events, cancel, done.
    expect(await bus.bindCaller(sessionId, 'caller-1')).toBe(true);
    expect(await bus.claimRun(sessionId, 'owner', 10000, draft(sessionId, 1))).toBe(true);
    const feed = await SessionFeed.open(bus, sessionId, null);
    const received: LogEntry[] = [];
    feed.start(keepingUpSink({ entry: (entry) => received.push(entry), gap: () => undefined, failed: (error) => { throw error; } }));
    await bus.publish(sessionId, draft(sessionId, 2));
    expect(await bus.requestCancel(sessionId)).toBe('cancelling');
    await bus.signalDone(sessionId, { status: 'cancelled' });
    await waitUntil(() => received.some((entry) => entry.kind === 'done'), { label: 'done on the feed' });
    feed.close();

    const names = Object.values(sessionKeys(prefix, sessionId));
    const owner = await cluster.masterOf(slot);
    const stored: string[] = [];
    for (const port of await masters()) {
      const keys = await cluster.admin(port).keys(`${prefix}*${sessionId}*`);
      if (port !== owner) expect(keys).toEqual([]);
      stored.push(...keys);
    }
    expect(stored.sort()).toEqual([`${prefix}{${sessionId}}:caller`, `${prefix}{${sessionId}}:log`, `${prefix}{${sessionId}}:meta`]);
    for (const name of [...names, ...stored]) expect(await keySlot(admin, name)).toBe(slot);
  });

  it('publishes events only as sharded pub/sub, on the shard serving the session', async () => {
    const prefix = `pub${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    const nodes = cluster.ports.map((port) => cluster.admin(port));
    await Promise.all(nodes.map((node) => node.call('CONFIG', 'RESETSTAT')));
    const sessionId = randomUUID();
    const shard = await cluster.masterOf(await keySlot(nodes[0], sessionId));
    const topology = await cluster.topology();
    const shardId = topology.find((node) => node.port === shard)?.id;
    const shardReplica = topology.find((node) => node.masterId === shardId)?.port;

    expect(await bus.claimRun(sessionId, 'owner', 10000)).toBe(true);
    const feed = await SessionFeed.open(bus, sessionId, null);
    const received: LogEntry[] = [];
    feed.start(keepingUpSink({ entry: (entry) => received.push(entry), gap: () => undefined, failed: (error) => { throw error; } }));
    for (let seq = 1; seq <= 5; seq++) await bus.publish(sessionId, draft(sessionId, seq));
    await bus.signalDone(sessionId, { status: 'completed' });
    await waitUntil(() => received.length === 6, { label: 'five events and done on the feed' });

    const { live } = sessionKeys(prefix, sessionId);
    for (const [i, node] of nodes.entries()) {
      const port = cluster.ports[i];
      expect(await commandCalls(node, 'publish')).toBe(0);
      expect((await node.call('PUBSUB', 'CHANNELS')) as string[]).toEqual([]);
      expect(((await node.call('PUBSUB', 'SHARDCHANNELS')) as string[]).includes(live)).toBe(port === shard);
      // Five events and done, published on the shard's master only; its replica stores them.
      expect(await commandCalls(node, 'spublish')).toBe(port === shard ? 6 : 0);
      expect(await commandCalls(node, 'xadd')).toBe(port === shard || port === shardReplica ? 6 : 0);
    }
    feed.close();
  });

  it('holds one subscriber connection per shard, shared by every stream, and lets go of it when the last leaves', async () => {
    const prefix = `sub${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    const sessions = Array.from({ length: 40 }, () => randomUUID());
    const feeds = await Promise.all(sessions.flatMap((sessionId) => [SessionFeed.open(bus, sessionId, null), SessionFeed.open(bus, sessionId, null)]));
    expect(bus.subscribedSessionCount).toBe(40);
    expect(bus.listenerCount).toBe(80);
    const subscribers = async () => {
      const perMaster: number[] = [];
      for (const port of await masters()) {
        const list = (await cluster.admin(port).client('LIST')) as string;
        perMaster.push(list.split('\n').filter((line) => line.includes(`name=${prefix}subscriber `)).length);
      }
      return perMaster;
    };
    // Forty sessions land on every shard: one connection each, whatever the number of streams.
    expect(await subscribers()).toEqual([1, 1, 1]);

    for (const feed of feeds) feed.close();
    expect(bus.subscribedSessionCount).toBe(0);
    await waitUntil(async () => (await subscribers()).every((count) => count === 0), { label: 'the shard connections to close' });
  });

  it('spreads the run index over bucket keys on several shards, each run in its bucket', async () => {
    const prefix = `idx${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix });
    // Sessions until every bucket has one.
    const sessions: string[] = [];
    const filled = new Set<string>();
    while (filled.size < 16) {
      const sessionId = randomUUID();
      sessions.push(sessionId);
      filled.add(runIndexBucket(prefix, 16, sessionId));
    }
    for (const sessionId of sessions) expect(await bus.claimRun(sessionId, 'owner', 60000)).toBe(true);

    const buckets = new Map<string, number>();
    for (const port of await masters()) {
      for (const key of await cluster.admin(port).keys(`${prefix}running:*`)) buckets.set(key, port);
    }
    expect(buckets.size).toBe(16);
    expect(new Set(buckets.values()).size).toBeGreaterThan(1);
    const admin = cluster.admin(cluster.ports[0]);
    expect(new Set(await Promise.all([...buckets.keys()].map((key) => keySlot(admin, key)))).size).toBe(16);
    for (const sessionId of sessions) {
      const bucket = runIndexBucket(prefix, 16, sessionId);
      const node = cluster.admin(buckets.get(bucket) as number);
      expect(await node.zscore(bucket, sessionId)).not.toBeNull();
    }
    for (const sessionId of sessions) await bus.signalDone(sessionId, { status: 'completed' });
    for (const [bucket, port] of buckets) expect(await cluster.admin(port).zcard(bucket)).toBe(0);
  });

  it('ends a dead owner\'s run within 3 × the lease, whichever shards hold its session and its bucket', async () => {
    const leaseMs = 600;
    const prefix = `dead${randomUUID().slice(0, 8)}:`;
    await newBus({ keyPrefix: prefix, runLeaseMs: leaseMs });
    const owner = clusterBus({ keyPrefix: prefix, runLeaseMs: 60000 });
    await owner.whenListening();
    const sessions = Array.from({ length: 6 }, () => randomUUID());
    for (const sessionId of sessions) {
      expect(await owner.claimRun(sessionId, 'dead-owner', leaseMs, draft(sessionId, 1))).toBe(true);
      await owner.publish(sessionId, draft(sessionId, 2));
    }
    await owner.close(); // dies: no renewal, no done
    const diedAt = Date.now();

    const reader = await newBus({ keyPrefix: prefix, runLeaseMs: 60000 });
    await waitUntil(
      async () => (await Promise.all(sessions.map((sessionId) => reader.read(sessionId, null)))).every((slice) => slice.status === 'failed'),
      { timeoutMs: 3 * leaseMs - (Date.now() - diedAt), intervalMs: 20, label: 'every run ended as run_lost within 3 × RUN_LEASE_MS' },
    );
    for (const sessionId of sessions) {
      const { entries } = await reader.read(sessionId, null);
      expect(entries.map((entry) => entry.kind)).toEqual(['event', 'event', 'event', 'done']);
      expect(JSON.parse(entries[2].data)).toMatchObject({ seq: 3, type: 'WORKFLOW_ERROR', details: { error: { code: 'run_lost' } } });
      expect(JSON.parse(entries[3].data)).toMatchObject({ status: 'failed', error: { code: 'run_lost' } });
    }
  });

  it('drops index entries a crash left behind (a claim that never ran, a done whose entry stayed), and keeps live runs', async () => {
    const prefix = `crash${randomUUID().slice(0, 8)}:`;
    const bus = await newBus({ keyPrefix: prefix, runLeaseMs: 60000 });
    const [never, finished, live] = [randomUUID(), randomUUID(), randomUUID()];
    expect(await bus.claimRun(finished, 'owner', 60000)).toBe(true);
    await bus.signalDone(finished, { status: 'completed' });
    expect(await bus.claimRun(live, 'owner', 60000)).toBe(true);
    const admin = cluster.admin(cluster.ports[0]);
    const nodeOf = async (key: string) => cluster.admin(await cluster.masterOf(await keySlot(admin, key)));
    // Entries long due, as a crash between the index and the session's own keys leaves them.
    for (const sessionId of [never, finished, live]) {
      const bucket = runIndexBucket(prefix, 16, sessionId);
      await (await nodeOf(bucket)).zadd(bucket, 1, sessionId);
    }
    expect(await bus.sweepExpiredRuns()).toEqual([]);
    const score = async (sessionId: string) => {
      const bucket = runIndexBucket(prefix, 16, sessionId);
      return (await nodeOf(bucket)).zscore(bucket, sessionId);
    };
    expect(await score(never)).toBeNull();
    expect(await score(finished)).toBeNull();
    expect(await score(live)).toBe('1');
    expect((await bus.read(live, null)).status).toBe('running');
    // The owner's renewal moves it back to the end of its lease.
    expect(await bus.renewLease(live, 'owner', 60000)).toBe(true);
    expect(Number(await score(live))).toBeGreaterThan(Date.now() - 60000);
  });

  it('follows a slot migration: a feed open across the move gets every entry once, with no gap', async () => {
    const prefix = `move${randomUUID().slice(0, 8)}:`;
    const owner = await newBus({ keyPrefix: prefix });
    const reader = await newBus({ keyPrefix: prefix });
    const sessionId = randomUUID();
    const admin = cluster.admin(cluster.ports[0]);
    const slot = await keySlot(admin, sessionId);
    expect(await owner.claimRun(sessionId, 'owner', 60000)).toBe(true);
    const published: string[] = [];
    for (let seq = 1; seq <= 3; seq++) published.push(await owner.publish(sessionId, draft(sessionId, seq)));
    const feed = await SessionFeed.open(reader, sessionId, null);
    const received: LogEntry[] = [];
    const gaps: unknown[] = [];
    feed.start(keepingUpSink({ entry: (entry) => received.push(entry), gap: (gap) => gaps.push(gap), failed: (error) => { throw error; } }));
    await waitUntil(() => received.length === 3, { label: 'the first three events' });

    const from = await cluster.masterOf(slot);
    const to = (await masters()).find((port) => port !== from) as number;
    const [source, target] = [cluster.admin(from), cluster.admin(to)];
    const [fromId, toId] = [(await source.call('CLUSTER', 'MYID')) as string, (await target.call('CLUSTER', 'MYID')) as string];
    await target.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    const keys = (await source.call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[];
    expect(keys.length).toBeGreaterThan(0);
    await source.call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'AUTH', PASSWORD, 'KEYS', ...keys);
    for (const port of [to, from, ...(await masters()).filter((p) => p !== to && p !== from)]) {
      await cluster.admin(port).call('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    }
    await waitUntil(async () => (await cluster.masterOf(slot)) === to, { label: 'the slot to move' });

    for (let seq = 4; seq <= 6; seq++) published.push(await owner.publish(sessionId, draft(sessionId, seq)));
    published.push((await owner.signalDone(sessionId, { status: 'completed' })) as string);
    await waitUntil(() => received.some((entry) => entry.kind === 'done'), { timeoutMs: 10000, label: 'done after the move' });
    feed.close();
    expect(received.map((entry) => entry.id)).toEqual(published);
    expect(gaps).toEqual([]);
  });
});

describe('a master killed mid-run (SIGKILL)', () => {
  const streams = streamFollower();
  const services: RunningService[] = [];
  afterAll(async () => {
    streams.closeAll();
    await Promise.all(services.map((svc) => svc.close()));
  });

  it('fails over to its replica: every run ends completed, readers get each event once, streams resume anywhere, new runs work', async () => {
    const target = { cluster: { nodes: cluster.startupNodes, password: PASSWORD } };
    for (let i = 0; i < 2; i++) services.push(await startRedisService(target, { runLeaseMs: 1000, keepAliveMs: null }));
    const admin = cluster.admin(cluster.ports[0]);
    await expectRunsToSurviveFailover({
      instances: [services[0], services[1]],
      streams,
      failOver: async (sessionId) => {
        await cluster.kill(await cluster.masterOf(await keySlot(admin, sessionId)));
        await cluster.whenHealthy();
      },
    });
  }, 90000);
});
