import { randomUUID } from 'node:crypto';
import type { LogEntry } from '../../server/timeline/bus';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import { SessionFeed } from '../../server/timeline/session-feed';
import { sessionKeys } from '../../server/timeline/session-keys';
import { request } from '../helpers/api';
import { commandCalls } from '../helpers/redis-server';
import { startRedisSentinel, type RedisSentinelSetup } from '../helpers/redis-sentinel';
import { startRedisService, type RunningService } from '../helpers/service';
import { streamFollower } from '../helpers/sse-reader';
import { draft, keepingUpSink } from '../helpers/timeline-fixtures';
import { waitUntil } from '../helpers/wait';
import { describeBusBehaviour } from './bus-behaviour';
import { expectRunsToSurviveFailover } from './failover-scenario';

/**
 * RedisBus on a real Sentinel deployment (a master, a replica, three Sentinels,
 * password-protected): the shared bus behaviour, plain pub/sub on the master, and a failover
 * of the master mid-run.
 */

const PASSWORD = 'sentinel-secret';

let setup: RedisSentinelSetup;

beforeAll(async () => {
  setup = await startRedisSentinel({ password: PASSWORD });
});
afterAll(async () => {
  await setup?.stop();
});

function sentinelBus(options: Partial<RedisBusOptions> = {}): RedisBus {
  return new RedisBus({
    sentinel: { sentinels: setup.sentinels, name: setup.name, password: PASSWORD },
    keyPrefix: `s${randomUUID().slice(0, 8)}:`,
    redis: { retryStrategy: () => 20 },
    ...options,
  });
}

describeBusBehaviour('RedisBus on a Sentinel-managed master', async (options) => {
  const bus = sentinelBus(options);
  await bus.whenListening();
  return bus;
});

describe('RedisBus on a Sentinel-managed master (Sentinel only)', () => {
  const buses: RedisBus[] = [];
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  it('works on the master the Sentinels name, with plain pub/sub', async () => {
    const prefix = `pub${randomUUID().slice(0, 8)}:`;
    const bus = sentinelBus({ keyPrefix: prefix });
    buses.push(bus);
    await bus.whenListening();
    await bus.ping();
    const master = setup.admin(await setup.masterPort());
    await master.call('CONFIG', 'RESETSTAT');

    const sessionId = randomUUID();
    expect(await bus.claimRun(sessionId, 'owner', 10000)).toBe(true);
    const feed = await SessionFeed.open(bus, sessionId, null);
    const received: LogEntry[] = [];
    feed.start(keepingUpSink({ entry: (entry) => received.push(entry), gap: () => undefined, failed: (error) => { throw error; } }));
    // Plain channels on the master: the session's live entries, and the owner's cancel requests.
    const { live, control } = sessionKeys(prefix, sessionId);
    expect(((await master.call('PUBSUB', 'CHANNELS', `${prefix}*`)) as string[]).sort()).toEqual([control, live].sort());
    for (let seq = 1; seq <= 3; seq++) await bus.publish(sessionId, draft(sessionId, seq));
    await bus.signalDone(sessionId, { status: 'completed' });
    await waitUntil(() => received.length === 4, { label: 'three events and done' });
    feed.close();
    expect(await commandCalls(master, 'publish')).toBe(4);
    expect(await commandCalls(master, 'spublish')).toBe(0);
  });
});

describe('the master killed mid-run (SIGKILL)', () => {
  const streams = streamFollower();
  const services: RunningService[] = [];
  afterAll(async () => {
    streams.closeAll();
    await Promise.all(services.map((svc) => svc.close()));
  });

  it('fails over to the replica: every run ends completed, readers get each event once, streams resume anywhere, new runs work', async () => {
    const target = { sentinel: { sentinels: setup.sentinels, name: setup.name, password: PASSWORD } };
    for (let i = 0; i < 2; i++) services.push(await startRedisService(target, { runLeaseMs: 1000, keepAliveMs: null }));
    const former = await setup.masterPort();
    await expectRunsToSurviveFailover({
      instances: [services[0], services[1]],
      streams,
      failOver: async () => {
        await setup.kill(former);
        await setup.whenPromoted(former);
      },
    });
    // Readiness follows the new master.
    for (const svc of services) expect((await request(`${svc.url}/readyz`)).status).toBe(200);
  }, 90000);
});
