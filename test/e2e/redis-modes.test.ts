import type { TimelineEvent } from '../../client-sdk/src/types';
import { cancelSession, executeAsync, request } from '../helpers/api';
import { freePort, spawnService, startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster';
import { startRedisSentinel, type RedisSentinelSetup } from '../helpers/redis-sentinel';
import { execute, newSessionId, synthetic } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil, within } from '../helpers/wait';

/**
 * `npm start` on a Redis Cluster (`REDIS_CLUSTER_NODES`) and on a Sentinel deployment
 * (`REDIS_SENTINELS` + `REDIS_SENTINEL_NAME`), password-protected (`REDIS_PASSWORD`): two
 * processes share sessions (stream on one, run and cancel on the other), and `/readyz` says
 * ready. A configuration naming two Redis modes does not start.
 */

const PASSWORD = 'modes-secret';
const streams = streamFollower();

afterEach(async () => {
  streams.closeAll();
  await stopAllProcesses();
});

describe('bad Redis configuration', () => {
  // The other refusals (a Sentinel name missing, a malformed host:port...) are unit-tested in config.test.ts.
  it('refuses two Redis modes at once: a non-zero exit and a message naming both variables', async () => {
    const proc = spawnService({ PORT: String(await freePort()), REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' });
    // Bounded for a loaded machine: the process loads every module before it reads the configuration.
    const exit = await within(proc.exited, 20000, 'the process to exit');
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    for (const name of ['REDIS_CLUSTER_NODES', 'REDIS_URL']) expect(proc.stderr).toContain(name);
    expect(proc.logs().some((l) => l.msg === 'timeline service listening')).toBe(false);
  });
});

/** Two processes on one deployment: a run on one, streamed on the other, cancelled from the other. */
async function expectSharedSessions(env: Record<string, string>, bus: string): Promise<void> {
  const [a, b] = (await Promise.all([startProcess(env), startProcess(env)])) as [ListeningProcess, ListeningProcess];
  expect(a.logs().find((line) => line.msg === 'timeline service listening')).toMatchObject({ bus });
  // Listening comes first; ready once the deployment answers (a cluster client maps the slots first).
  for (const proc of [a, b]) {
    await waitUntil(async () => (await request(`${proc.url}/readyz`)).status === 200, { timeoutMs: 15000, label: `${proc.url}/readyz to answer 200` });
  }

  const sessionId = newSessionId();
  const reader = await streams.follow(a.url, sessionId);
  const response = await execute(b.url, synthetic(sessionId, { events: 20, interval_ms: 0 }));
  expect(response.body).toMatchObject({ status: 'completed', event_count: 22 });
  const done = await reader.waitFor(isNamed('done'));
  expect(JSON.parse(done.data)).toMatchObject({ status: 'completed' });
  expect(seqs(timelineEvents<TimelineEvent>(reader))).toEqual(range(1, 22));

  // A cancel sent to the instance that does not run the session reaches the one that does.
  const cancelled = newSessionId();
  const follower = await streams.follow(b.url, cancelled);
  expect((await executeAsync(a.url, synthetic(cancelled, { events: 1000, interval_ms: 20 }))).status).toBe(202);
  await follower.waitFor(seqAtLeast(3));
  expect((await cancelSession(b.url, cancelled)).status).toBe(202);
  const ended = await follower.waitFor(isNamed('done'), 10000, 'done after the cancel');
  expect(JSON.parse(ended.data)).toEqual({ status: 'cancelled' });
}

describe('npm start on a Redis Cluster', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster({ password: PASSWORD });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('shares sessions between instances through any startup node, and is ready', async () => {
    // Two of the six nodes are enough to find the rest.
    const nodes = cluster.nodesEnv.split(',').slice(0, 2).join(',');
    await expectSharedSessions({ REDIS_CLUSTER_NODES: nodes, REDIS_PASSWORD: PASSWORD }, 'redis-cluster');
  });
});

describe('npm start on a Sentinel deployment', () => {
  let setup: RedisSentinelSetup;
  beforeAll(async () => {
    setup = await startRedisSentinel({ password: PASSWORD });
  });
  afterAll(async () => {
    await setup?.stop();
  });

  it('shares sessions between instances on the master the Sentinels name, and is ready', async () => {
    await expectSharedSessions(
      { REDIS_SENTINELS: setup.sentinelsEnv, REDIS_SENTINEL_NAME: setup.name, REDIS_PASSWORD: PASSWORD },
      'redis-sentinel',
    );
  });
});
