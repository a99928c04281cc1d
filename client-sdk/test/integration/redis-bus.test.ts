import { randomUUID } from 'node:crypto';
import { TimelineClient } from '../../src';
import type { Config } from '../../../server/config';
import { startRedisServer, type RedisServer } from '../../../test/helpers/redis-server';
import { record, settle, tapEvents } from '../../../test/helpers/sdk-run';
import { startRedisService, synthetic, type RunningService } from '../../../test/helpers/service';
import { startTcpProxy } from '../../../test/helpers/tcp-proxy';
import { range, seqs } from '../../../test/helpers/timeline-fixtures';
import { describeSdkBehaviour, SDK_SUITE_CONFIG } from './behaviour';

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis?.stop();
});

/** A service on the shared private Redis, with its own key prefix so tests cannot see each other. */
const startOnRedis = (overrides: Partial<Config>, keyPrefix = `sdk${randomUUID().slice(0, 8)}:`): Promise<RunningService> =>
  startRedisService(redis.url, overrides, { keyPrefix });

describeSdkBehaviour('Redis bus', (overrides) => startOnRedis(overrides));

const portOf = (service: RunningService): number => Number(new URL(service.url).port);

describe('client SDK across two instances on one Redis', () => {
  const services: RunningService[] = [];
  afterEach(async () => {
    await Promise.all(services.splice(0).map((service) => service.close()));
  });

  it('resumes on the other instance when its connection is cut (a load balancer moving it)', async () => {
    const prefix = `sdk${randomUUID().slice(0, 8)}:`;
    const [a, b] = await Promise.all([startOnRedis(SDK_SUITE_CONFIG, prefix), startOnRedis(SDK_SUITE_CONFIG, prefix)]);
    services.push(a, b);
    const proxy = await startTcpProxy(portOf(a));
    const controller = new AbortController();
    try {
      const client = new TimelineClient({ baseUrl: proxy.url, reconnect: { initialDelayMs: 50 } });
      const run = client.execute(synthetic(undefined, { events: 40, interval_ms: 10 }), { signal: controller.signal });
      const seen = record(run);
      tapEvents(run, (event) => {
        if (event.seq !== 15) return;
        proxy.setTarget(portOf(b));
        proxy.cutAll();
      });
      expect(await settle(run)).toEqual({ result: { events: 40 } });
      expect(seqs(seen.events)).toEqual(range(1, 42));
      expect(seen.gaps).toEqual([]);
      // The run executed on A; after the cut B served the stream, resuming from the last id.
      const [post] = proxy.requests.filter((request) => request.path === '/execute');
      expect(post.target).toBe(portOf(a));
      const streams = proxy.requests.filter((request) => request.path.startsWith('/timeline/stream/'));
      expect(streams.map((request) => request.target)).toEqual([portOf(a), ...streams.slice(1).map(() => portOf(b))]);
      expect(streams.length).toBeGreaterThanOrEqual(2);
      expect(seen.events.map((event) => event.event_id)).toContain(streams[1].headers['last-event-id']);
    } finally {
      // A failed assertion must not leave the run following a server that is going away.
      controller.abort();
      await proxy.close();
    }
  });
});
