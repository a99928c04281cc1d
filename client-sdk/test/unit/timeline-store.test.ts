import { TimelineClient } from '../../src';
import type { PersistedSession, SessionPersistence } from '../../src/react/session-persistence';
import { TimelineStore, type TimelineState } from '../../src/react/timeline-store';
import { Waiters, within } from '../../../test/helpers/wait';
import { range, seqs } from '../../../test/helpers/timeline-fixtures';
import { doneFrame, errorJson, eventFrames, eventId, FakeService, readyFrame } from '../helpers/fake-service';

/**
 * The state machine behind useTimeline (no React here), against the scripted service: what it
 * shows, what it keeps for a reload, and that it never opens a second stream or run. The hook
 * itself, in React's StrictMode and through a real reload, is in
 * client-sdk/test/e2e/react-reload.test.ts.
 */

const BASE = 'http://timeline.test';
const SESSION = '0b8e0d6a-5c51-4b9e-8d67-2f0d0c3b7a10';
const REQUEST = { project_id: 'p1', query: 'q', workflow: 'synthetic', params: { events: 3 } };

/** `sessionStorage` for one key, in memory; `writes` counts what the store stored. */
class MemoryPersistence implements SessionPersistence {
  saved: PersistedSession | null;
  writes = 0;

  constructor(saved: PersistedSession | null = null) {
    this.saved = saved;
  }

  read(): PersistedSession | null {
    return this.saved && { ...this.saved };
  }

  write(session: PersistedSession): void {
    this.saved = { ...session };
    this.writes += 1;
  }

  clear(): void {
    this.saved = null;
  }
}

const stores: TimelineStore<unknown>[] = [];
// No test leaves a run followed: reset() stops following (and leaves the fake server's run be).
afterEach(() => {
  for (const store of stores.splice(0)) store.reset();
});

function setup(saved: PersistedSession | null = null, persist = true) {
  const service = new FakeService();
  const client = new TimelineClient({ baseUrl: BASE, fetch: service.fetch, reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
  const persistence = new MemoryPersistence(saved);
  const store = new TimelineStore<{ events: number }>(client, persist ? persistence : null);
  stores.push(store);
  // What a component sees: each snapshot it is told about, in order.
  const seen: TimelineState<{ events: number }>[] = [];
  const waiters = new Waiters();
  store.subscribe(() => {
    seen.push(store.getSnapshot());
    waiters.notify();
  });
  const until = (match: (state: TimelineState<{ events: number }>) => boolean, label: string) =>
    waiters.until(() => (match(store.getSnapshot()) ? store.getSnapshot() : undefined), 5000, () => label);
  /** A component uses the store and starts a run; the service sends ready and `events` events. */
  const running = async (events: number) => {
    store.attach();
    const sessionId = store.start(REQUEST);
    const stream = await service.nextStream();
    stream.send(readyFrame(sessionId) + eventFrames(sessionId, 1, events));
    await until((state) => state.events.length === events, `${events} events`);
    return { sessionId, stream };
  };
  return { service, store, persistence, seen, until, running };
}

const streamsOf = (service: FakeService) => service.requestsTo('/timeline/stream/');

describe('useTimeline state: a run started here', () => {
  it('starts idle and touches nothing before a component uses it', async () => {
    const { service, store, persistence } = setup({ sessionId: SESSION, lastEventId: '5-0' });
    expect(store.getSnapshot()).toEqual({
      sessionId: null,
      status: 'idle',
      events: [],
      result: undefined,
      error: null,
      gaps: [],
      connection: null,
    });
    expect(store.getSnapshot()).toBe(store.getServerSnapshot());
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(service.requests).toEqual([]);
    expect(persistence.writes).toBe(0);
  });

  it('waits, runs and completes: events in order, the result, and the session kept for a reload', async () => {
    const { service, store, persistence, until } = setup();
    store.attach();
    const sessionId = store.start(REQUEST);
    expect(store.getSnapshot()).toMatchObject({ sessionId, status: 'waiting', events: [] });
    expect(persistence.saved).toEqual({ sessionId, lastEventId: null });

    const stream = await service.nextStream();
    stream.send(readyFrame(sessionId));
    await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    stream.send(eventFrames(sessionId, 1, 2));
    const running = await until((state) => state.events.length === 2, 'two events');
    expect(running.status).toBe('running');
    expect(running.connection).toBe('live');
    expect(persistence.saved).toEqual({ sessionId, lastEventId: eventId(2) });

    stream.send(eventFrames(sessionId, 3, 5) + doneFrame(eventId(6), { status: 'completed', result: { events: 3 } }));
    const done = await until((state) => state.status === 'completed', 'completed');
    expect(seqs([...done.events])).toEqual(range(1, 5));
    expect(done).toMatchObject({ sessionId, result: { events: 3 }, error: null, connection: null });
    expect(persistence.saved).toEqual({ sessionId, lastEventId: eventId(6) });
    expect(streamsOf(service)).toHaveLength(1);
    expect(service.requestsTo('/execute')).toHaveLength(1);
  });

  it('starts one run at a time: a second start() while running returns the same session', async () => {
    const { service, store } = setup();
    store.attach();
    const first = store.start(REQUEST);
    expect(store.start({ ...REQUEST, query: 'another' })).toBe(first);
    const stream = await service.nextStream();
    stream.send(readyFrame(first) + eventFrames(first, 1, 1));
    await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    expect(store.start(REQUEST)).toBe(first);
    stream.send(doneFrame(eventId(2), { status: 'completed' }));
    await within(stream.closed, 2000, 'the stream to close');
    // Finished: the next start() is a new run.
    expect(store.start(REQUEST)).not.toBe(first);
    await service.nextStream();
    expect(service.requestsTo('/execute')).toHaveLength(1);
    expect(streamsOf(service)).toHaveLength(2);
  });

  it('a failed run: status failed, the error code of done, no result', async () => {
    const { service, store, until } = setup();
    store.attach();
    const sessionId = store.start(REQUEST);
    (await service.nextStream()).send(
      readyFrame(sessionId) +
        eventFrames(sessionId, 1, 2) +
        doneFrame(eventId(3), { status: 'failed', error: { code: 'model_overloaded', message: 'busy' } }),
    );
    const failed = await until((state) => state.status === 'failed', 'failed');
    expect(failed.error?.code).toBe('model_overloaded');
    expect(failed.error?.done?.status).toBe('failed');
    expect(failed.result).toBeUndefined();
    expect(failed.events).toHaveLength(2);
  });

  it('a refused run: failed with the server code, and nothing kept to resume', async () => {
    const { service, store, persistence, until } = setup();
    service.executeAnswer = () => errorJson(400, 'invalid_request');
    store.attach();
    const sessionId = store.start(REQUEST);
    (await service.nextStream()).send(readyFrame(sessionId));
    const failed = await until((state) => state.status === 'failed', 'failed');
    expect(failed.error?.code).toBe('invalid_request');
    expect(persistence.saved).toBeNull();
  });

  it('cancel(): asks the server, then shows cancelled when done says so', async () => {
    const { service, store, until, running } = setup();
    const { sessionId, stream } = await running(2);
    expect(store.getSnapshot().status).toBe('running');
    await store.cancel();
    expect(service.requestsTo(`/timeline/${sessionId}/cancel`)).toHaveLength(1);
    stream.send(eventFrames(sessionId, 3, 3) + doneFrame(eventId(4), { status: 'cancelled' }));
    const cancelled = await until((state) => state.status === 'cancelled', 'cancelled');
    expect(cancelled.error).toBeNull();
    expect(cancelled.events).toHaveLength(3);
  });

  it('cancel() before the stream is ready: cancelled, and the run never posted', async () => {
    const { service, store, until } = setup();
    store.attach();
    store.start(REQUEST);
    const stream = await service.nextStream();
    await store.cancel();
    await until((state) => state.status === 'cancelled', 'cancelled');
    await within(stream.closed, 2000, 'the stream to close');
    expect(service.requestsTo('/execute')).toHaveLength(0);
  });

  it('reset(): idle, the stream closed, the session forgotten, the run left to the server', async () => {
    const { service, store, persistence, running } = setup();
    const { sessionId, stream } = await running(2);
    store.reset();
    expect(store.getSnapshot()).toEqual(store.getServerSnapshot());
    expect(persistence.saved).toBeNull();
    await within(stream.closed, 2000, 'the stream to close');
    // Frames of the forgotten run change nothing.
    stream.send(eventFrames(sessionId, 3, 3));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(store.getSnapshot().status).toBe('idle');
    expect(service.requestsTo(`/timeline/${sessionId}/cancel`)).toHaveLength(0);
  });

  it('with persist off it keeps nothing', async () => {
    const { persistence, running } = setup(null, false);
    await running(1);
    expect(persistence.writes).toBe(0);
  });
});

describe('useTimeline state: mounting', () => {
  it('StrictMode (attach, detach, attach at once) keeps the one stream and the one run', async () => {
    const { service, store, until } = setup({ sessionId: SESSION, lastEventId: eventId(2) });
    store.attach();
    store.detach();
    store.attach();
    const stream = await service.nextStream();
    stream.send(readyFrame(SESSION, 'running') + eventFrames(SESSION, 1, 3));
    await until((state) => state.events.length === 3, 'three events');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(stream.isClosed).toBe(false);
    expect(streamsOf(service)).toHaveLength(1);
    stream.send(doneFrame(eventId(4), { status: 'completed' }));
    await until((state) => state.status === 'completed', 'completed');
  });

  it('an unmount stops following after a tick; the run goes on and a later mount resumes after what it has', async () => {
    const { service, store, until, running } = setup();
    const { sessionId, stream: first } = await running(3);
    store.detach();
    await within(first.closed, 2000, 'the stream to close');
    expect(service.requestsTo(`/timeline/${sessionId}/cancel`)).toHaveLength(0);
    expect(store.getSnapshot()).toMatchObject({ status: 'running', connection: null });

    store.attach();
    const second = await service.nextStream();
    expect(second.request.headers.get('Last-Event-ID')).toBe(eventId(3));
    second.send(readyFrame(sessionId, 'running') + eventFrames(sessionId, 4, 5) + doneFrame(eventId(6), { status: 'completed' }));
    const done = await until((state) => state.status === 'completed', 'completed');
    expect(seqs([...done.events])).toEqual(range(1, 5));
  });

  it('tells listeners once per task, not once per event, and keeps snapshots stable between changes', async () => {
    const { service, store, seen, until } = setup();
    store.attach();
    const sessionId = store.start(REQUEST);
    const stream = await service.nextStream();
    stream.send(readyFrame(sessionId));
    await until((state) => state.connection === 'live', 'live');
    const before = seen.length;
    stream.send(eventFrames(sessionId, 1, 200));
    await until((state) => state.events.length === 200, '200 events');
    expect(seen.length - before).toBeLessThan(20);
    const snapshot = store.getSnapshot();
    expect(store.getSnapshot()).toBe(snapshot);
    expect(Object.isFrozen(snapshot) && Object.isFrozen(snapshot.events)).toBe(true);
  });
});

describe('useTimeline state: after a reload', () => {
  it('replays the saved session from its start, then live events, then done', async () => {
    const { service, store, persistence, until } = setup({ sessionId: SESSION, lastEventId: eventId(3) });
    store.attach();
    expect(store.getSnapshot()).toMatchObject({ sessionId: SESSION, status: 'waiting' });
    const stream = await service.nextStream();
    expect(stream.request.url).toBe(`${BASE}/timeline/stream/${SESSION}`);
    // From the start: the page's events are gone with the reload.
    expect(stream.request.headers.get('Last-Event-ID')).toBeNull();
    stream.send(readyFrame(SESSION, 'running') + eventFrames(SESSION, 1, 3));
    expect((await until((state) => state.events.length === 3, 'the replay')).status).toBe('running');
    stream.send(eventFrames(SESSION, 4, 5) + doneFrame(eventId(6), { status: 'completed', result: { events: 3 } }));
    const done = await until((state) => state.status === 'completed', 'completed');
    expect(seqs([...done.events])).toEqual(range(1, 5));
    expect(done.result).toEqual({ events: 3 });
    expect(persistence.saved).toEqual({ sessionId: SESSION, lastEventId: eventId(6) });
    expect(service.requestsTo('/execute')).toHaveLength(0);
  });

  it('a session whose log is gone (ready says waiting after events were seen): idle, forgotten', async () => {
    const { service, store, persistence, until } = setup({ sessionId: SESSION, lastEventId: eventId(3) });
    store.attach();
    const stream = await service.nextStream();
    stream.send(readyFrame(SESSION, 'waiting'));
    await until((state) => state.status === 'idle', 'idle');
    expect(store.getSnapshot().sessionId).toBeNull();
    expect(persistence.saved).toBeNull();
    await within(stream.closed, 2000, 'the stream to close');
  });

  it('a session saved before its first event waits for the run to start', async () => {
    const { service, store, until } = setup({ sessionId: SESSION, lastEventId: null });
    store.attach();
    const stream = await service.nextStream();
    stream.send(readyFrame(SESSION, 'waiting'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.getSnapshot()).toMatchObject({ sessionId: SESSION, status: 'waiting', connection: 'live' });
    stream.send(eventFrames(SESSION, 1, 1));
    await until((state) => state.status === 'running', 'running');
  });

  it('a session the server does not know (404 session_not_found): idle, forgotten', async () => {
    const { service, store, persistence, until } = setup({ sessionId: SESSION, lastEventId: eventId(3) });
    service.streamAnswers.push(() => errorJson(404, 'session_not_found'));
    store.attach();
    await until((state) => state.status === 'idle', 'idle');
    expect(persistence.saved).toBeNull();
  });

  it('a finished session replays to its done', async () => {
    const { service, store, until } = setup({ sessionId: SESSION, lastEventId: eventId(4) });
    store.attach();
    (await service.nextStream()).send(
      readyFrame(SESSION, 'cancelled') + eventFrames(SESSION, 1, 3) + doneFrame(eventId(4), { status: 'cancelled' }),
    );
    const done = await until((state) => state.status === 'cancelled', 'cancelled');
    expect(seqs([...done.events])).toEqual(range(1, 3));
  });
});
