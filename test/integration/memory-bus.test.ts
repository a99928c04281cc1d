import { randomUUID } from 'node:crypto';
import type { TimelineBus } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { SessionFeed } from '../../server/timeline/session-feed';
import { waitUntil } from '../helpers/wait';
import { draft } from '../helpers/timeline-fixtures';
import { describeBusBehaviour } from './bus-behaviour';

describeBusBehaviour('MemoryBus', async (options) => new MemoryBus(options));

async function finishedSession(bus: TimelineBus, events = 2): Promise<string> {
  const sessionId = randomUUID();
  expect(await bus.claimRun(sessionId, 'owner', 10000)).toBe(true);
  for (let seq = 1; seq <= events; seq++) await bus.publish(sessionId, draft(sessionId, seq));
  await bus.signalDone(sessionId, { status: 'completed' });
  return sessionId;
}

describe('MemoryBus (memory only)', () => {
  const buses: MemoryBus[] = [];
  const newBus = (...args: ConstructorParameters<typeof MemoryBus>) => {
    const bus = new MemoryBus(...args);
    buses.push(bus);
    return bus;
  };
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  describe('retention (EVENT_TTL_S)', () => {
    it('reclaims a finished session once its TTL has passed (real clock)', async () => {
      const bus = newBus({ eventTtlS: 1, sweepIntervalMs: 20 });
      const sessionId = await finishedSession(bus);
      expect(bus.sessionCount).toBe(1);
      await waitUntil(() => bus.sessionCount === 0, { timeoutMs: 5000, label: 'the finished session to expire' });
      expect(await bus.read(sessionId, null)).toEqual({ status: 'waiting', entries: [], gap: null, more: false });
      expect(await bus.requestCancel(sessionId)).toBe('not_found');
    });

    it('counts the TTL from the last write, and never reclaims a running session', async () => {
      let now = 1_000_000;
      const clock = () => now;
      const bus = newBus({ eventTtlS: 10, sweepIntervalMs: 5, now: clock });

      const old = await finishedSession(bus);
      const running = randomUUID();
      expect(await bus.claimRun(running, 'owner', 10000)).toBe(true);
      const runningIds = [await bus.publish(running, draft(running, 1))];

      now += 6_000;
      const recent = await finishedSession(bus);
      runningIds.push(await bus.publish(running, draft(running, 2)));
      expect(bus.sessionCount).toBe(3);

      // 10.5 s after `old` finished, 4.5 s after `recent` did.
      now += 4_500;
      await waitUntil(() => bus.sessionCount === 2, { label: 'the older finished session to expire' });
      expect((await bus.read(old, null)).status).toBe('waiting');
      expect((await bus.read(recent, null)).status).toBe('completed');

      // Far past every TTL: the finished one goes, the running one stays with its whole log.
      now += 3_600_000;
      await waitUntil(() => bus.sessionCount === 1, { label: 'the recent finished session to expire' });
      expect((await bus.read(recent, null)).status).toBe('waiting');
      const slice = await bus.read(running, null);
      expect(slice.status).toBe('running');
      expect(slice.entries.map((entry) => entry.id)).toEqual(runningIds);
      expect(await bus.renewLease(running, 'owner', 10000)).toBe(true);

      // Once it finishes, its TTL starts and it goes too.
      await bus.signalDone(running, { status: 'completed' });
      now += 10_001;
      await waitUntil(() => bus.sessionCount === 0, { label: 'the last session to expire' });
    });
  });

  describe('subscriptions', () => {
    it('counts subscribed sessions and forgets a session once its last listener leaves', async () => {
      const bus = newBus();
      const a = randomUUID();
      const b = randomUUID();
      const listener = { onEntry: () => undefined };
      const a1 = await bus.subscribe(a, listener);
      const a2 = await bus.subscribe(a, { onEntry: () => undefined });
      const b1 = await bus.subscribe(b, listener);
      expect(bus.subscribedSessionCount).toBe(2);
      a1.unsubscribe();
      expect(bus.subscribedSessionCount).toBe(2);
      a2.unsubscribe();
      a2.unsubscribe();
      expect(bus.subscribedSessionCount).toBe(1);
      b1.unsubscribe();
      expect(bus.subscribedSessionCount).toBe(0);
    });

    it('leaves no subscription behind when a SessionFeed closes', async () => {
      const bus = newBus();
      const sessionId = await finishedSession(bus);
      const feeds = await Promise.all(Array.from({ length: 10 }, () => SessionFeed.open(bus, sessionId, null)));
      expect(bus.subscribedSessionCount).toBe(1);
      for (const feed of feeds) feed.close();
      expect(bus.subscribedSessionCount).toBe(0);
    });

    it('closes the SessionFeed subscription when its first read fails', async () => {
      const bus = newBus();
      const failing = new Proxy(bus, {
        get(target, property) {
          if (property === 'read') return async () => Promise.reject(new Error('read failed'));
          const value = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      await expect(SessionFeed.open(failing, randomUUID(), null)).rejects.toThrow('read failed');
      expect(bus.subscribedSessionCount).toBe(0);
    });
  });
});
