import { randomUUID } from 'node:crypto';
import type { DonePayload, GapPayload } from '../../client-sdk/src/types';
import type { LiveListener, LogEntry, TimelineBus } from '../../server/timeline/bus';
import { compareEventIds, isEventId } from '../../server/timeline/event-id';
import { SessionFeed, type FeedSink } from '../../server/timeline/session-feed';
import { draft } from '../helpers/timeline-fixtures';
import { Waiters, waitUntil, within } from '../helpers/wait';

/** Retention settings every bus implementation takes. */
export interface BusBehaviourOptions {
  maxEventsPerSession: number;
  eventTtlS: number;
}

/**
 * Makes a fresh bus for one test. Called once or more per test; an implementation backed by
 * shared storage (Redis) should give each call its own key prefix so tests cannot see each other.
 */
export type MakeBus = (options: BusBehaviourOptions) => Promise<TimelineBus>;

/** Disposes of a bus `makeBus` made, after its test (e.g. delete its keys). Defaults to `bus.close()`. */
export type CleanupBus = (bus: TimelineBus) => Promise<void>;

const DEFAULT_OPTIONS: BusBehaviourOptions = { maxEventsPerSession: 1000, eventTtlS: 3600 };
/** Live delivery may be asynchronous (Redis pub/sub): every wait is bounded by this. */
const WAIT_MS = 5000;
const LEASE_MS = 10000;

/** Publishes `count` events one after another (the run owner awaits each publish); returns their ids. */
async function publishMany(bus: TimelineBus, sessionId: string, count: number, firstSeq = 1): Promise<string[]> {
  const ids: string[] = [];
  for (let seq = firstSeq; seq < firstSeq + count; seq++) ids.push(await bus.publish(sessionId, draft(sessionId, seq)));
  return ids;
}

async function startSession(bus: TimelineBus, owner = 'owner-a'): Promise<string> {
  const sessionId = randomUUID();
  expect(await bus.claimRun(sessionId, owner, LEASE_MS)).toBe(true);
  return sessionId;
}

const ids = (entries: LogEntry[]) => entries.map((entry) => entry.id);

function expectIncreasing(list: string[]): void {
  for (let i = 1; i < list.length; i++) expect(compareEventIds(list[i - 1], list[i])).toBeLessThan(0);
}

/** Something that collects entries as they come and can be awaited on. */
class Collector {
  readonly entries: LogEntry[] = [];
  private readonly waiters = new Waiters();

  push(entry: LogEntry): void {
    this.entries.push(entry);
    this.waiters.notify();
  }

  /** Resolves once `check` holds, or fails after `WAIT_MS` showing what arrived. */
  async until(check: (entries: LogEntry[]) => boolean, label: string): Promise<void> {
    await this.waiters.until(
      () => (check(this.entries) ? true : undefined),
      WAIT_MS,
      () => `${label}; got ${JSON.stringify(ids(this.entries))}`,
    );
  }

  untilCount(count: number): Promise<void> {
    return this.until((entries) => entries.length >= count, `${count} entries`);
  }

  untilDone(): Promise<void> {
    return this.until((entries) => entries.some((entry) => entry.kind === 'done'), 'done');
  }
}

class LiveRecorder extends Collector implements LiveListener {
  onEntry(entry: LogEntry): void {
    this.push(entry);
  }
}

/** A feed sink that records every call in order, gaps and failures included; it keeps up (never refuses). */
class FeedRecorder extends Collector implements FeedSink {
  readonly calls: Array<{ kind: 'entry'; id: string } | { kind: 'gap'; gap: GapPayload }> = [];
  readonly failures: unknown[] = [];

  get unsentBytes(): number {
    return 0;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  entry(entry: LogEntry): boolean {
    this.calls.push({ kind: 'entry', id: entry.id });
    this.push(entry);
    return true;
  }

  gap(gap: GapPayload): void {
    this.calls.push({ kind: 'gap', gap });
  }

  failed(error: unknown): void {
    this.failures.push(error);
  }
}

/**
 * A bus whose live feed can lose entries, as pub/sub does across a reconnect: while `dropping`
 * is set, live entries never reach listeners; `resync()` then tells them, as a bus does when
 * it has reconnected.
 */
function withLossyLiveFeed(bus: TimelineBus): TimelineBus & { dropping: boolean; resync(): void } {
  const listeners = new Set<LiveListener>();
  const lossy = {
    dropping: false,
    resync: () => {
      for (const listener of listeners) listener.onResync?.();
    },
  };
  return new Proxy(bus, {
    get(target, property) {
      if (property === 'dropping' || property === 'resync') return lossy[property];
      if (property === 'subscribe') {
        return async (sessionId: string, listener: LiveListener) => {
          listeners.add(listener);
          return target.subscribe(sessionId, {
            onEntry: (entry) => {
              if (!lossy.dropping) listener.onEntry(entry);
            },
            onResync: () => listener.onResync?.(),
          });
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set(_target, property, value) {
      if (property !== 'dropping') return false;
      lossy.dropping = value as boolean;
      return true;
    },
  }) as TimelineBus & { dropping: boolean; resync(): void };
}

/**
 * Runs `hook` inside the first `read` of `bus`, before or after the real read, so a test can
 * publish exactly while a reader's catch-up read is in flight.
 */
function withFirstReadHook(bus: TimelineBus, when: 'before' | 'after', hook: () => Promise<void>): TimelineBus {
  let hooked = false;
  return new Proxy(bus, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== 'read') return typeof value === 'function' ? value.bind(target) : value;
      return async (sessionId: string, afterId: string | null) => {
        if (hooked) return target.read(sessionId, afterId);
        hooked = true;
        if (when === 'before') await hook();
        const slice = await target.read(sessionId, afterId);
        if (when === 'after') await hook();
        return slice;
      };
    },
  });
}

/**
 * The behaviour every `TimelineBus` must have, and `SessionFeed`'s guarantees on top of it.
 * Each test makes its own bus(es) through `makeBus` and uses fresh random session ids.
 */
export function describeBusBehaviour(name: string, makeBus: MakeBus, cleanup: CleanupBus = (bus) => bus.close()): void {
  describe(`${name} (TimelineBus behaviour)`, () => {
    const made: TimelineBus[] = [];
    const newBus = async (options: Partial<BusBehaviourOptions> = {}): Promise<TimelineBus> => {
      const bus = await makeBus({ ...DEFAULT_OPTIONS, ...options });
      made.push(bus);
      return bus;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((bus) => cleanup(bus)));
    });

    describe('claimRun', () => {
      it('reads a session never started as waiting and empty', async () => {
        const bus = await newBus();
        expect(await bus.read(randomUUID(), null)).toEqual({ status: 'waiting', entries: [], gap: null, more: false });
      });

      it('gives a session to exactly one of many concurrent claimers', async () => {
        const bus = await newBus();
        const sessionId = randomUUID();
        const owners = Array.from({ length: 25 }, (_, i) => `owner-${i}`);
        const results = await Promise.all(owners.map((owner) => bus.claimRun(sessionId, owner, LEASE_MS)));
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = owners[results.indexOf(true)];
        expect((await bus.read(sessionId, null)).status).toBe('running');
        expect(await bus.renewLease(sessionId, winner, LEASE_MS)).toBe(true);
        for (const loser of owners.filter((owner) => owner !== winner)) {
          expect(await bus.renewLease(sessionId, loser, LEASE_MS)).toBe(false);
        }
      });

      it('refuses a second claim while running and after the run finished', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus, 'owner-a');
        expect(await bus.claimRun(sessionId, 'owner-a', LEASE_MS)).toBe(false);
        expect(await bus.claimRun(sessionId, 'owner-b', LEASE_MS)).toBe(false);
        await bus.signalDone(sessionId, { status: 'completed', result: null });
        expect(await bus.claimRun(sessionId, 'owner-b', LEASE_MS)).toBe(false);
        expect((await bus.read(sessionId, null)).status).toBe('completed');
      });

      it('keeps different sessions independent', async () => {
        const bus = await newBus();
        const a = await startSession(bus);
        const b = await startSession(bus);
        await publishMany(bus, a, 3);
        await bus.signalDone(a, { status: 'completed' });
        expect(await bus.read(b, null)).toEqual({ status: 'running', entries: [], gap: null, more: false });
      });
    });

    describe('publish and read', () => {
      it('assigns increasing ids and reads every event back in order, with the status', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 30);
        for (const id of published) expect(isEventId(id)).toBe(true);
        expectIncreasing(published);

        const slice = await bus.read(sessionId, null);
        expect(slice.status).toBe('running');
        expect(slice.gap).toBeNull();
        expect(ids(slice.entries)).toEqual(published);
        slice.entries.forEach((entry, i) => {
          expect(entry.kind).toBe('event');
          expect(entry.seq).toBe(i + 1);
          expect(entry.data.startsWith(`{"event_id":"${published[i]}",`)).toBe(true);
          expect(JSON.parse(entry.data)).toEqual({ event_id: published[i], ...draft(sessionId, i + 1) });
        });
      });

      it('orders concurrent publishes by id', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await Promise.all(
          Array.from({ length: 20 }, (_, i) => bus.publish(sessionId, draft(sessionId, i + 1))),
        );
        expect(new Set(published).size).toBe(20);
        const read = ids((await bus.read(sessionId, null)).entries);
        expect([...read].sort(compareEventIds)).toEqual(read);
        expect([...read].sort()).toEqual([...published].sort());
      });

      it('reads only the entries after a given id', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 10);
        expect(ids((await bus.read(sessionId, published[3])).entries)).toEqual(published.slice(4));
        expect(ids((await bus.read(sessionId, published[0])).entries)).toEqual(published.slice(1));
        expect(await bus.read(sessionId, published[9])).toEqual({ status: 'running', entries: [], gap: null, more: false });
        // Well-formed ids that are not in the log: before everything, and after everything.
        expect(ids((await bus.read(sessionId, '0-1')).entries)).toEqual(published);
        expect((await bus.read(sessionId, '0-1')).gap).toBeNull();
        expect((await bus.read(sessionId, '99999999999999-0')).entries).toEqual([]);
      });

      it('rejects a publish after the session finished', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 2);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await expect(bus.publish(sessionId, draft(sessionId, 3))).rejects.toThrow();
        expect(ids((await bus.read(sessionId, null)).entries)).toEqual([...published, doneId]);
      });
    });

    describe('read in pages (limit)', () => {
      /** Reads the log after `from` to its end, `limit` entries at a time; returns each page. */
      async function readPages(bus: TimelineBus, sessionId: string, limit: number, from: string | null = null) {
        const pages = [];
        let afterId = from;
        for (;;) {
          const page = await bus.read(sessionId, afterId, limit);
          pages.push(page);
          if (!page.more) return pages;
          afterId = page.entries.at(-1)?.id ?? null;
        }
      }

      it('returns at most limit entries, says whether more remain, and pages through to done', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 7);
        const doneId = (await bus.signalDone(sessionId, { status: 'completed' })) as string;
        const pages = await readPages(bus, sessionId, 3);
        expect(pages.map((page) => ids(page.entries))).toEqual([
          published.slice(0, 3),
          published.slice(3, 6),
          [published[6], doneId],
        ]);
        expect(pages.map((page) => page.more)).toEqual([true, true, false]);
        expect(pages.every((page) => page.status === 'completed' && page.gap === null)).toBe(true);
        // A log that ends exactly at a page boundary: the last full page says nothing remains.
        const exact = await readPages(bus, sessionId, 4);
        expect(exact.map((page) => ids(page.entries))).toEqual([published.slice(0, 4), [...published.slice(4), doneId]]);
        expect(exact.map((page) => page.more)).toEqual([true, false]);
        expect(await bus.read(sessionId, published[5], 1)).toEqual({
          status: 'completed',
          entries: [expect.objectContaining({ id: published[6] })],
          gap: null,
          more: true,
        });
        expect(await bus.read(sessionId, doneId, 5)).toEqual({ status: 'completed', entries: [], gap: null, more: false });
        expect(await bus.read(randomUUID(), null, 5)).toEqual({ status: 'waiting', entries: [], gap: null, more: false });
      });

      it('reports the gap of a trimmed log on the first page only', async () => {
        const bus = await newBus({ maxEventsPerSession: 5 });
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 12);
        const kept = published.slice(7);
        for (const from of [null, published[2]]) {
          const pages = await readPages(bus, sessionId, 2, from);
          expect(pages.map((page) => ids(page.entries))).toEqual([kept.slice(0, 2), kept.slice(2, 4), kept.slice(4)]);
          expect(pages.map((page) => page.gap)).toEqual([{ after: from, first_available: kept[0] }, null, null]);
        }
      });
    });

    describe('signalDone', () => {
      it('appends done after every event, sets the status, and happens only once', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 3);
        const done: DonePayload = { status: 'completed', result: { answer: 42 } };
        const doneId = await bus.signalDone(sessionId, done);
        expect(doneId).not.toBeNull();
        expect(isEventId(doneId as string)).toBe(true);
        expect(compareEventIds(published[2], doneId)).toBeLessThan(0);

        const slice = await bus.read(sessionId, null);
        expect(slice.status).toBe('completed');
        expect(ids(slice.entries)).toEqual([...published, doneId]);
        const last = slice.entries[3];
        expect(last.kind).toBe('done');
        expect(JSON.parse(last.data)).toEqual(done);

        expect(await bus.signalDone(sessionId, { status: 'failed', error: { code: 'x', message: 'again' } })).toBeNull();
        const after = await bus.read(sessionId, null);
        expect(after.status).toBe('completed');
        expect(after.entries.filter((entry) => entry.kind === 'done')).toHaveLength(1);
        expect(ids((await bus.read(sessionId, published[2])).entries)).toEqual([doneId]);
        expect(await bus.read(sessionId, doneId)).toEqual({ status: 'completed', entries: [], gap: null, more: false });
      });

      it.each<DonePayload>([
        { status: 'failed', error: { code: 'workflow_failed', message: 'provider said no' } },
        { status: 'cancelled' },
      ])('records a $status run with its payload', async (done) => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const doneId = await bus.signalDone(sessionId, done);
        const slice = await bus.read(sessionId, null);
        expect(slice.status).toBe(done.status);
        expect(slice.entries).toEqual([{ id: doneId, kind: 'done', data: JSON.stringify(done) }]);
      });

      it('settles concurrent signals with exactly one done', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const results = await Promise.all([
          bus.signalDone(sessionId, { status: 'completed' }),
          bus.signalDone(sessionId, { status: 'cancelled' }),
          bus.signalDone(sessionId, { status: 'failed', error: { code: 'run_lost', message: 'lost' } }),
        ]);
        expect(results.filter((id) => id !== null)).toHaveLength(1);
        const slice = await bus.read(sessionId, null);
        expect(slice.entries).toHaveLength(1);
        expect(JSON.parse(slice.entries[0].data).status).toBe(slice.status);
      });
    });

    describe('subscribe', () => {
      it('delivers live entries in order, done included', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const live = new LiveRecorder();
        const subscription = await bus.subscribe(sessionId, live);
        const published = await publishMany(bus, sessionId, 20);
        const doneId = await bus.signalDone(sessionId, { status: 'completed', result: 'ok' });
        await live.untilDone();
        expect(ids(live.entries)).toEqual([...published, doneId]);
        expect(live.entries.map((entry) => entry.kind)).toEqual([...published.map(() => 'event'), 'done']);
        expect(live.entries.map((entry) => entry.seq)).toEqual([...published.map((_, i) => i + 1), undefined]);
        const stored = (await bus.read(sessionId, null)).entries;
        expect(live.entries).toEqual(stored);
        subscription.unsubscribe();
      });

      it('hands every listener of a session the same entry, decoded once', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const first = new LiveRecorder();
        const second = new LiveRecorder();
        await bus.subscribe(sessionId, first);
        await bus.subscribe(sessionId, second);
        await publishMany(bus, sessionId, 2);
        await first.untilCount(2);
        await second.untilCount(2);
        expect(second.entries[0]).toBe(first.entries[0]);
        expect(second.entries[1]).toBe(first.entries[1]);
      });

      it('delivers only the subscribed session', async () => {
        const bus = await newBus();
        const a = await startSession(bus);
        const b = await startSession(bus);
        const liveA = new LiveRecorder();
        const liveB = new LiveRecorder();
        const subA = await bus.subscribe(a, liveA);
        const subB = await bus.subscribe(b, liveB);
        const publishedA = await publishMany(bus, a, 3);
        const publishedB = await publishMany(bus, b, 4);
        await bus.signalDone(a, { status: 'completed' });
        await bus.signalDone(b, { status: 'completed' });
        await Promise.all([liveA.untilDone(), liveB.untilDone()]);
        expect(ids(liveA.entries).slice(0, 3)).toEqual(publishedA);
        expect(ids(liveB.entries).slice(0, 4)).toEqual(publishedB);
        expect(liveA.entries).toHaveLength(4);
        expect(liveB.entries).toHaveLength(5);
        subA.unsubscribe();
        subB.unsubscribe();
      });

      it('stops delivering after unsubscribe, while other listeners keep receiving', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const leaving = new LiveRecorder();
        const staying = new LiveRecorder();
        const leavingSub = await bus.subscribe(sessionId, leaving);
        const stayingSub = await bus.subscribe(sessionId, staying);
        const before = await publishMany(bus, sessionId, 2);
        await Promise.all([leaving.untilCount(2), staying.untilCount(2)]);
        leavingSub.unsubscribe();
        leavingSub.unsubscribe(); // twice is harmless
        const after = await publishMany(bus, sessionId, 3, 3);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        // `staying` is the witness: once it has done, `leaving` would have had everything too.
        await staying.untilDone();
        expect(ids(staying.entries)).toEqual([...before, ...after, doneId]);
        expect(ids(leaving.entries)).toEqual(before);
        stayingSub.unsubscribe();
      });
    });

    describe('trimming (maxEventsPerSession)', () => {
      it('keeps the newest N events and reports a gap to readers positioned before them', async () => {
        const bus = await newBus({ maxEventsPerSession: 5 });
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 12);
        const kept = published.slice(7);

        const full = await bus.read(sessionId, null);
        expect(ids(full.entries)).toEqual(kept);
        expect(full.gap).toEqual({ after: null, first_available: kept[0] });

        for (const trimmed of [published[0], published[3], published[5]]) {
          const slice = await bus.read(sessionId, trimmed);
          expect(ids(slice.entries)).toEqual(kept);
          expect(slice.gap).toEqual({ after: trimmed, first_available: kept[0] });
        }

        for (const retained of [published[7], published[9]]) {
          const slice = await bus.read(sessionId, retained);
          expect(slice.gap).toBeNull();
          expect(ids(slice.entries)).toEqual(published.slice(published.indexOf(retained) + 1));
        }
      });

      it('does not count done against the cap, and keeps the gap after the run finished', async () => {
        const bus = await newBus({ maxEventsPerSession: 5 });
        const exact = await startSession(bus);
        const exactIds = await publishMany(bus, exact, 5);
        const exactDone = await bus.signalDone(exact, { status: 'completed' });
        const exactSlice = await bus.read(exact, null);
        expect(ids(exactSlice.entries)).toEqual([...exactIds, exactDone]);
        expect(exactSlice.gap).toBeNull();

        const over = await startSession(bus);
        const overIds = await publishMany(bus, over, 8);
        const overDone = await bus.signalDone(over, { status: 'completed' });
        const overSlice = await bus.read(over, null);
        expect(overSlice.status).toBe('completed');
        expect(ids(overSlice.entries)).toEqual([...overIds.slice(3), overDone]);
        expect(overSlice.gap).toEqual({ after: null, first_available: overIds[3] });
      });
    });

    describe('requestCancel', () => {
      it('answers not_found for a session never started', async () => {
        const bus = await newBus();
        expect(await bus.requestCancel(randomUUID())).toBe('not_found');
      });

      it('answers cancelling for a running session and calls the handler with its id', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const requested = new Promise<string>((resolve) => {
          bus.onCancelRequest((id) => {
            if (id === sessionId) resolve(id);
          });
        });
        expect(await bus.requestCancel(sessionId)).toBe('cancelling');
        expect(await within(requested, WAIT_MS, 'the cancel handler')).toBe(sessionId);
      });

      it('stops calling a handler once it is removed', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const removedCalls: string[] = [];
        const off = bus.onCancelRequest((id) => removedCalls.push(id));
        off();
        const witness = new Promise<void>((resolve) => bus.onCancelRequest((id) => id === sessionId && resolve()));
        expect(await bus.requestCancel(sessionId)).toBe('cancelling');
        await within(witness, WAIT_MS, 'the remaining cancel handler');
        expect(removedCalls).toEqual([]);
      });

      it('answers finished once the session is done', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        await bus.signalDone(sessionId, { status: 'completed' });
        expect(await bus.requestCancel(sessionId)).toBe('finished');
      });
    });

    describe('renewLease', () => {
      it('renews for the owner only, and not after the run finished', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus, 'owner-a');
        expect(await bus.renewLease(sessionId, 'owner-a', LEASE_MS)).toBe(true);
        expect(await bus.renewLease(sessionId, 'owner-a', LEASE_MS)).toBe(true);
        expect(await bus.renewLease(sessionId, 'owner-b', LEASE_MS)).toBe(false);
        await bus.signalDone(sessionId, { status: 'completed' });
        expect(await bus.renewLease(sessionId, 'owner-a', LEASE_MS)).toBe(false);
      });

      it('does not renew a session never started', async () => {
        const bus = await newBus();
        expect(await bus.renewLease(randomUUID(), 'owner-a', LEASE_MS)).toBe(false);
      });
    });

    describe('caller binding', () => {
      it('keeps the caller a run was claimed with: its session is theirs alone, whatever bound it before', async () => {
        const bus = await newBus();
        const sessionId = randomUUID();
        expect(await bus.runCaller(sessionId)).toBeNull();
        expect(await bus.claimRun(sessionId, 'owner-a', LEASE_MS, undefined, { caller: 'alice' })).toBe(true);
        expect(await bus.runCaller(sessionId)).toBe('alice');
        expect(await bus.bindCaller(sessionId, 'bob')).toBe(false);
        expect(await bus.bindCaller(sessionId, 'alice')).toBe(true);
        await bus.signalDone(sessionId, { status: 'completed' });
        expect(await bus.runCaller(sessionId)).toBe('alice');
        expect(await bus.bindCaller(sessionId, 'bob')).toBe(false);
      });

      it('binds a session without a run to its first caller, and only on bindCaller', async () => {
        const bus = await newBus();
        const sessionId = randomUUID();
        expect(await bus.bindCaller(sessionId, 'alice')).toBe(true);
        expect(await bus.bindCaller(sessionId, 'bob')).toBe(false);
        expect(await bus.bindCaller(sessionId, 'alice')).toBe(true);
        // A binding before the run is not the run's caller until a claim says so.
        expect(await bus.runCaller(sessionId)).toBeNull();
      });

      it('stores no caller for a run claimed without one', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        expect(await bus.runCaller(sessionId)).toBeNull();
      });
    });

    it('ping resolves while the bus is reachable', async () => {
      const bus = await newBus();
      await expect(bus.ping()).resolves.toBeUndefined();
    });

    describe('SessionFeed over the bus', () => {
      it.each([
        ['before', 'publishes land in both the read and the live feed'],
        ['after', 'publishes land only in the live feed'],
      ] as const)(
        'delivers every event exactly once, in order, when events are published %s the first read runs (%s)',
        async (when, _why) => {
          const bus = await newBus();
          const sessionId = await startSession(bus);
          const early = await publishMany(bus, sessionId, 5);
          const during: string[] = [];
          const racing = withFirstReadHook(bus, when, async () => {
            during.push(...(await publishMany(bus, sessionId, 5, 6)));
          });

          const feed = await SessionFeed.open(racing, sessionId, null);
          expect(during).toHaveLength(5);
          expect(feed.status).toBe('running');
          expect(feed.finishedAlready).toBe(false);
          // Published after the read but before delivery starts: must wait, then follow.
          const beforeStart = await publishMany(bus, sessionId, 3, 11);
          const sink = new FeedRecorder();
          feed.start(sink);
          const live = await publishMany(bus, sessionId, 4, 14);
          const doneId = await bus.signalDone(sessionId, { status: 'completed' });
          await sink.untilDone();
          feed.close();

          expect(ids(sink.entries)).toEqual([...early, ...during, ...beforeStart, ...live, doneId]);
          expect(sink.calls.every((call) => call.kind === 'entry')).toBe(true);
          expect(sink.failures).toEqual([]);
        },
      );

      it('delivers every event and done once when the run finishes during the first read', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const early = await publishMany(bus, sessionId, 3);
        const rest: string[] = [];
        const racing = withFirstReadHook(bus, 'before', async () => {
          rest.push(...(await publishMany(bus, sessionId, 3, 4)));
          rest.push((await bus.signalDone(sessionId, { status: 'completed' })) as string);
        });
        const feed = await SessionFeed.open(racing, sessionId, null);
        const sink = new FeedRecorder();
        feed.start(sink);
        await sink.untilDone();
        feed.close();
        expect(ids(sink.entries)).toEqual([...early, ...rest]);
      });

      it('resumes after a given id: only later entries, then live ones', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 10);
        const feed = await SessionFeed.open(bus, sessionId, published[4]);
        const sink = new FeedRecorder();
        feed.start(sink);
        const live = await publishMany(bus, sessionId, 2, 11);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        expect(ids(sink.entries)).toEqual([...published.slice(5), ...live, doneId]);
      });

      it('reports the gap of a trimmed log before replaying what is left', async () => {
        const bus = await newBus({ maxEventsPerSession: 3 });
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 6);
        const feed = await SessionFeed.open(bus, sessionId, published[0]);
        const sink = new FeedRecorder();
        feed.start(sink);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        expect(sink.calls).toEqual([
          { kind: 'gap', gap: { after: published[0], first_available: published[3] } },
          ...[...published.slice(3), doneId].map((id) => ({ kind: 'entry', id })),
        ]);
      });

      it('knows when the reader already has everything (finishedAlready)', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 4);

        const running = await SessionFeed.open(bus, sessionId, published[3]);
        expect(running.status).toBe('running');
        expect(running.finishedAlready).toBe(false);
        running.close();

        const doneId = (await bus.signalDone(sessionId, { status: 'failed', error: { code: 'e', message: 'm' } })) as string;

        const afterDone = await SessionFeed.open(bus, sessionId, doneId);
        expect(afterDone.status).toBe('failed');
        expect(afterDone.finishedAlready).toBe(true);
        afterDone.close();

        const afterLastEvent = await SessionFeed.open(bus, sessionId, published[3]);
        expect(afterLastEvent.finishedAlready).toBe(false);
        const sink = new FeedRecorder();
        afterLastEvent.start(sink);
        await sink.untilDone();
        afterLastEvent.close();
        expect(ids(sink.entries)).toEqual([doneId]);

        const fromStart = await SessionFeed.open(bus, sessionId, null);
        expect(fromStart.finishedAlready).toBe(false);
        fromStart.close();

        const waiting = await SessionFeed.open(bus, randomUUID(), '99999999999999-0');
        expect(waiting.status).toBe('waiting');
        expect(waiting.finishedAlready).toBe(false);
        waiting.close();
      });

      it('ignores a live entry at or before the reader position, as a late message of an earlier subscription', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const [eventId] = await publishMany(bus, sessionId, 1);
        const doneId = (await bus.signalDone(sessionId, { status: 'completed' })) as string;
        const { entries } = await bus.read(sessionId, null);
        // The done message of a subscription just closed reaches the next one of the channel.
        const echoing = new Proxy(bus, {
          get(target, property) {
            if (property === 'subscribe') {
              return async (id: string, listener: LiveListener) => {
                const subscription = await target.subscribe(id, listener);
                for (const entry of entries) listener.onEntry(entry);
                return subscription;
              };
            }
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const afterDone = await SessionFeed.open(echoing, sessionId, doneId);
        expect(afterDone.finishedAlready).toBe(true);
        afterDone.close();

        const afterEvent = await SessionFeed.open(echoing, sessionId, eventId);
        const sink = new FeedRecorder();
        afterEvent.start(sink);
        await sink.untilDone();
        afterEvent.close();
        expect(ids(sink.entries)).toEqual([doneId]);
      });

      it('delivers nothing more once closed', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const first = await publishMany(bus, sessionId, 2);
        const closing = await SessionFeed.open(bus, sessionId, null);
        const witness = await SessionFeed.open(bus, sessionId, null);
        const closingSink = new FeedRecorder();
        const witnessSink = new FeedRecorder();
        closing.start(closingSink);
        witness.start(witnessSink);
        await closingSink.untilCount(2);
        closing.close();
        const later = await publishMany(bus, sessionId, 3, 3);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await witnessSink.untilDone();
        witness.close();
        expect(ids(witnessSink.entries)).toEqual([...first, ...later, doneId]);
        expect(ids(closingSink.entries)).toEqual(first);
      });

      it('reads again after a resync: live entries the bus lost are delivered once, in order', async () => {
        const bus = await newBus();
        const lossy = withLossyLiveFeed(bus);
        const sessionId = await startSession(bus);
        const first = await publishMany(bus, sessionId, 2);
        const feed = await SessionFeed.open(lossy, sessionId, null);
        const sink = new FeedRecorder();
        feed.start(sink);
        await sink.untilCount(2);
        lossy.dropping = true;
        const lost = await publishMany(bus, sessionId, 3, 3);
        lossy.dropping = false;
        lossy.resync();
        const later = await publishMany(bus, sessionId, 2, 6);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        expect(ids(sink.entries)).toEqual([...first, ...lost, ...later, doneId]);
      });

      it('keeps a resync that comes before start, and reads again once it starts', async () => {
        const bus = await newBus();
        const lossy = withLossyLiveFeed(bus);
        const sessionId = await startSession(bus);
        const first = await publishMany(bus, sessionId, 2);
        const feed = await SessionFeed.open(lossy, sessionId, null);
        lossy.dropping = true;
        const lost = await publishMany(bus, sessionId, 3, 3);
        lossy.dropping = false;
        lossy.resync();
        const sink = new FeedRecorder();
        feed.start(sink);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        expect(ids(sink.entries)).toEqual([...first, ...lost, doneId]);
      });

      it('catches up a page at a time, with live entries published during the replay, each once', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const early = await publishMany(bus, sessionId, 7);
        const reads: Array<{ limit: number | undefined; returned: number }> = [];
        const recording = new Proxy(bus, {
          get(target, property) {
            if (property === 'read') {
              return async (id: string, afterId: string | null, limit?: number) => {
                const slice = await target.read(id, afterId, limit);
                reads.push({ limit, returned: slice.entries.length });
                return slice;
              };
            }
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const during: string[] = [];
        /**
         * Publishes one more event as each of the first replayed entries is sent, and counts it
         * as unsent until it is published: the feed waits for it before its next read.
         */
        class PublishingRecorder extends FeedRecorder {
          private started = 0;
          private inFlight = 0;
          private published: Promise<void> = Promise.resolve();
          override get unsentBytes(): number {
            return this.inFlight;
          }
          override drained(): Promise<void> {
            return this.published;
          }
          override entry(entry: LogEntry): boolean {
            super.entry(entry);
            if (this.started < 4) {
              const seq = 8 + this.started++;
              this.inFlight += 1;
              this.published = this.published.then(async () => {
                during.push(await bus.publish(sessionId, draft(sessionId, seq)));
                this.inFlight -= 1;
              });
            }
            return true;
          }
        }
        const feed = await SessionFeed.open(recording, sessionId, null, { pageSize: 3 });
        const sink = new PublishingRecorder();
        feed.start(sink);
        await sink.untilCount(11);
        const live = await publishMany(bus, sessionId, 2, 12);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        expect(ids(sink.entries)).toEqual([...early, ...during, ...live, doneId]);
        expect(reads.length).toBeGreaterThanOrEqual(3);
        for (const read of reads) {
          expect(read.limit).toBe(3);
          expect(read.returned).toBeLessThanOrEqual(3);
        }
      });

      it('reports the gap of a trimmed log once when it catches up in pages', async () => {
        const bus = await newBus({ maxEventsPerSession: 5 });
        const sessionId = await startSession(bus);
        const published = await publishMany(bus, sessionId, 12);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        const feed = await SessionFeed.open(bus, sessionId, published[2], { pageSize: 2 });
        const sink = new FeedRecorder();
        feed.start(sink);
        await sink.untilDone();
        feed.close();
        expect(sink.calls).toEqual([
          { kind: 'gap', gap: { after: published[2], first_available: published[7] } },
          ...[...published.slice(7), doneId].map((id) => ({ kind: 'entry', id })),
        ]);
      });

      it('keeps nothing for a reader that refuses an entry, and catches it up from the log once it drained, each entry once', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const early = await publishMany(bus, sessionId, 3);
        const readsAfter: Array<string | null> = [];
        const recording = new Proxy(bus, {
          get(target, property) {
            if (property === 'read') {
              return (id: string, afterId: string | null, limit?: number) => {
                readsAfter.push(afterId);
                return target.read(id, afterId, limit);
              };
            }
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        /** While `stalled`, refuses every entry, like a socket that stopped draining. */
        class StallingRecorder extends FeedRecorder {
          stalled = false;
          refusals = 0;
          private release: (() => void) | null = null;
          override get unsentBytes(): number {
            return this.stalled ? 60000 : 0;
          }
          override drained(): Promise<void> {
            return new Promise((resolve) => (this.release = resolve));
          }
          override entry(entry: LogEntry): boolean {
            if (!this.stalled) return super.entry(entry);
            this.refusals += 1;
            return false;
          }
          drain(): void {
            this.stalled = false;
            this.release?.();
          }
        }
        const feed = await SessionFeed.open(recording, sessionId, null, { maxHeldBytes: 64 * 1024 });
        const sink = new StallingRecorder();
        feed.start(sink);
        await sink.untilCount(3);
        const witness = new LiveRecorder();
        const watching = await bus.subscribe(sessionId, witness);

        sink.stalled = true;
        const missed = await publishMany(bus, sessionId, 5, 4);
        await witness.untilCount(5);
        // Only the first was offered: from then on the feed left them to the log, holding none.
        expect(sink.refusals).toBe(1);
        expect(feed.heldBytes).toBe(0);
        expect(readsAfter).toHaveLength(1);

        sink.drain();
        await sink.untilCount(8);
        expect(readsAfter.slice(1)).toContain(early[2]);
        const later = await publishMany(bus, sessionId, 2, 9);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        watching.unsubscribe();
        expect(ids(sink.entries)).toEqual([...early, ...missed, ...later, doneId]);
      });

      it('lets go of live entries past maxHeldBytes while it catches up, and reads them from the log instead, each once', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        const early = await publishMany(bus, sessionId, 3);
        let reads = 0;
        let openGate: () => void = () => undefined;
        const gate = new Promise<void>((resolve) => (openGate = resolve));
        /** Holds the answer of the second read (the catch-up's next page) until the gate opens. */
        const gated = new Proxy(bus, {
          get(target, property) {
            if (property === 'read') {
              return async (id: string, afterId: string | null, limit?: number) => {
                reads += 1;
                const slice = await target.read(id, afterId, limit);
                if (reads === 2) await gate;
                return slice;
              };
            }
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const entryBytes = Buffer.byteLength((await bus.read(sessionId, null)).entries[0].data);
        const maxHeldBytes = Math.floor(3.5 * entryBytes);
        const feed = await SessionFeed.open(gated, sessionId, null, { pageSize: 2, maxHeldBytes });
        const witness = new LiveRecorder();
        const watching = await bus.subscribe(sessionId, witness);
        const sink = new FeedRecorder();
        feed.start(sink);
        await waitUntil(() => reads === 2, { label: 'the second page to be read' });

        const live = await publishMany(bus, sessionId, 6, 4);
        await witness.untilCount(6);
        // Six entries came while the page was read: more than maxHeldBytes, so the first three
        // were let go (the log has them), and only what came after is held.
        expect(feed.heldBytes).toBeGreaterThan(0);
        expect(feed.heldBytes).toBeLessThanOrEqual(maxHeldBytes);
        expect(feed.heldBytes).toBeLessThan(3 * entryBytes);

        openGate();
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        watching.unsubscribe();
        expect(ids(sink.entries)).toEqual([...early, ...live, doneId]);
        // The page after the gate, then a read for what was let go.
        expect(reads).toBeGreaterThanOrEqual(3);
      });

      it('drops an event resent under a new id: its seq was delivered already', async () => {
        const bus = await newBus();
        const sessionId = await startSession(bus);
        // As after an empty Redis restart: the owner sent seq 2 again, and it got a later id.
        const resending = new Proxy(bus, {
          get(target, property) {
            if (property === 'subscribe') {
              return async (id: string, listener: LiveListener) =>
                target.subscribe(id, {
                  onEntry: (entry) => {
                    listener.onEntry(entry);
                    const [ms, n] = entry.id.split('-');
                    if (entry.seq === 2) listener.onEntry({ ...entry, id: `${ms}-${Number(n) + 1}` });
                  },
                  onResync: () => listener.onResync?.(),
                });
            }
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const feed = await SessionFeed.open(resending, sessionId, null);
        const sink = new FeedRecorder();
        feed.start(sink);
        const published = await publishMany(bus, sessionId, 3);
        const doneId = await bus.signalDone(sessionId, { status: 'completed' });
        await sink.untilDone();
        feed.close();
        // The copy's id may be the one seq 3 gets next: seqs tell them apart.
        expect(sink.entries.map((entry) => entry.seq)).toEqual([1, 2, 3, undefined]);
        expect(ids(sink.entries)).toEqual([...published, doneId]);
      });
    });
  });
}
