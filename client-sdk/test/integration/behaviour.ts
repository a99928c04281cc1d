import { TimelineClient, type TimelineClientOptions } from '../../src';
import type { FetchLike } from '../../src/api';
import type { SessionHistory, TimelineEvent } from '../../src/types';
import type { Config } from '../../../server/config';
import { getHistory } from '../../../test/helpers/api';
import { nextEvent, record, settle, tapEvents } from '../../../test/helpers/sdk-run';
import { execute, newSessionId, synthetic, type RunningService } from '../../../test/helpers/service';
import { startTcpProxy, type TcpProxy } from '../../../test/helpers/tcp-proxy';
import { range, seqs } from '../../../test/helpers/timeline-fixtures';
import { waitUntil } from '../../../test/helpers/wait';

/**
 * Starts one real service (any bus) with `overrides` on top of the suite's defaults. The SDK
 * suite runs the same cases against every bus: pass a factory for each (memory, Redis).
 */
export type StartSdkServer = (overrides: Partial<Config>) => Promise<RunningService>;

/** Fast reconnects (`retry: 50`) and pings that a short stall timeout would notice. */
export const SDK_SUITE_CONFIG: Partial<Config> = { retryMs: 50, keepAliveMs: 500 };

const WAIT_MS = 15000;

async function history(url: string, sessionId: string): Promise<SessionHistory> {
  const response = await getHistory(url, sessionId);
  expect(response.status).toBe(200);
  return response.json;
}

export function describeSdkBehaviour(name: string, startServer: StartSdkServer): void {
  describe(`client SDK against a real server (${name})`, () => {
    const servers: RunningService[] = [];
    const proxies: TcpProxy[] = [];
    const controllers: AbortController[] = [];

    afterEach(async () => {
      // Every run a test left open stops following before its server goes away.
      for (const controller of controllers.splice(0)) controller.abort();
      await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
      await Promise.all(servers.splice(0).map((server) => server.close()));
    });

    async function server(overrides: Partial<Config> = {}): Promise<RunningService> {
      const running = await startServer({ ...SDK_SUITE_CONFIG, ...overrides });
      servers.push(running);
      return running;
    }

    async function proxyTo(running: RunningService): Promise<TcpProxy> {
      const proxy = await startTcpProxy(Number(new URL(running.url).port));
      proxies.push(proxy);
      return proxy;
    }

    function client(baseUrl: string, options: Partial<TimelineClientOptions> = {}): TimelineClient {
      return new TimelineClient({ baseUrl, reconnect: { initialDelayMs: 50, maxAttempts: 20 }, stallTimeoutMs: 5000, ...options });
    }

    /** A signal the suite aborts after the test, so no run outlives it. */
    function signal(): AbortSignal {
      const controller = new AbortController();
      controllers.push(controller);
      return controller.signal;
    }

    it('execute(): opens the stream, then POSTs, and follows a synthetic run to done', async () => {
      const svc = await server();
      const proxy = await proxyTo(svc);
      const run = client(proxy.url).execute(synthetic(undefined, { events: 25, interval_ms: 1 }), { signal: signal() });
      const seen = record(run);
      expect(await settle(run)).toEqual({ result: { events: 25 } });

      const [first, second] = proxy.requests;
      expect(first).toMatchObject({ method: 'GET', path: `/timeline/stream/${run.sessionId}` });
      expect(first.headers['last-event-id']).toBeUndefined();
      expect(second).toMatchObject({ method: 'POST', path: '/execute' });
      expect(second.headers.prefer).toBe('respond-async');

      expect(seqs(seen.events)).toEqual(range(1, 27));
      expect(seen.events[0].type).toBe('WORKFLOW_START');
      expect(seen.events[26].type).toBe('WORKFLOW_COMPLETE');
      const stored = await history(svc.url, run.sessionId);
      expect(seen.events).toEqual(stored.events);
      expect(seen.done).toEqual([stored.done]);
      expect(seen.errors).toEqual([]);
      expect(run.lastEventId).toBe(stored.done?.id);
    });

    it('execute(): runs the default agents workflow and iterates its live timeline', async () => {
      const svc = await server();
      const run = client(svc.url).execute<{ route: string; answer: string }>(
        { project_id: 'p1', query: 'Compare Redis Streams and Kafka' },
        { signal: signal() },
      );
      const events: TimelineEvent[] = [];
      for await (const event of run) events.push(event);
      const result = await run.result;
      expect(typeof result.answer).toBe('string');
      expect(seqs(events)).toEqual(range(1, events.length));
      expect(events.map((event) => event.type)).toEqual(expect.arrayContaining(['WORKFLOW_START', 'AGENT_TOKEN', 'WORKFLOW_COMPLETE']));
      expect(events.every((event) => event.session_id === run.sessionId)).toBe(true);
    });

    it('resumes after its connection is cut mid-run: Last-Event-ID, no gap, no duplicate, then done', async () => {
      const svc = await server();
      const proxy = await proxyTo(svc);
      const run = client(proxy.url).execute(synthetic(undefined, { events: 60, interval_ms: 10 }), { signal: signal() });
      const seen = record(run);
      const cutAfter = [12, 35];
      const cutAt: string[] = [];
      tapEvents(run, (event) => {
        if (event.seq !== cutAfter[cutAt.length]) return;
        cutAt.push(event.event_id);
        proxy.cutAll();
      });

      expect(await settle(run)).toEqual({ result: { events: 60 } });
      expect(cutAt).toHaveLength(2);
      // Every event exactly once, in order, across both cuts; the same log the server kept.
      expect(seqs(seen.events)).toEqual(range(1, 62));
      const stored = await history(svc.url, run.sessionId);
      expect(seen.events).toEqual(stored.events);
      expect(seen.done).toEqual([stored.done]);
      expect(seen.gaps).toEqual([]);
      expect(seen.errors).toEqual([]);
      expect(seen.connection).toEqual(['live', 'reconnecting', 'live', 'reconnecting', 'live']);

      // The cuts really broke the stream, and each reconnect resumed where delivery stood.
      const streams = proxy.requests.filter((request) => request.path.startsWith('/timeline/stream/'));
      expect(streams.length).toBeGreaterThanOrEqual(3);
      const resumedFrom = streams.slice(1).map((request) => request.headers['last-event-id']);
      const deliveredIds = seen.events.map((event) => event.event_id);
      for (const id of resumedFrom) expect(deliveredIds).toContain(id);
      expect(deliveredIds.indexOf(resumedFrom[0])).toBeGreaterThanOrEqual(deliveredIds.indexOf(cutAt[0]));
      expect(deliveredIds.indexOf(resumedFrom[0])).toBeLessThan(61);
      expect(proxy.requests.filter((request) => request.path === '/execute')).toHaveLength(1);
    });

    it('follow(): another tab joins mid-run from the start, a reload resumes after its last id', async () => {
      const svc = await server();
      const sdk = client(svc.url);
      const run = sdk.execute(synthetic(undefined, { events: 30, interval_ms: 10 }), { signal: signal() });
      const tenth = await nextEvent(run, (event) => event.seq === 10, 'event 10');

      const otherTab = sdk.follow(run.sessionId, { signal: signal() });
      const tab = record(otherTab);
      const reloaded = sdk.follow(run.sessionId, { lastEventId: tenth.event_id, signal: signal() });
      const reload = record(reloaded);

      const [own, joined, resumed] = await Promise.all([settle(run), settle(otherTab), settle(reloaded)]);
      expect(own).toEqual({ result: { events: 30 } });
      expect(joined).toEqual(own);
      expect(resumed).toEqual(own);
      expect(seqs(tab.events)).toEqual(range(1, 32));
      expect(seqs(reload.events)).toEqual(range(11, 32));
      expect(tab.done).toEqual(reload.done);
    });

    it('follow() after done with the done id: 204, and the result from the history', async () => {
      const svc = await server();
      const sdk = client(svc.url);
      const run = sdk.execute(synthetic(undefined, { events: 3 }), { signal: signal() });
      expect(await settle(run)).toEqual({ result: { events: 3 } });

      const again = sdk.follow(run.sessionId, { lastEventId: run.lastEventId, signal: signal() });
      const seen = record(again);
      expect(await settle(again)).toEqual({ result: { events: 3 } });
      expect(seen.events).toEqual([]);
      expect(seen.done.map((done) => done.id)).toEqual([run.lastEventId]);
    });

    it('surfaces a gap when the log was trimmed before the reader came', async () => {
      const svc = await server({ maxEventsPerSession: 10 });
      const sessionId = newSessionId();
      // 12 events (start, 10, complete) into a log that keeps 10.
      expect((await execute(svc.url, synthetic(sessionId, { events: 10 }))).status).toBe(200);
      const run = client(svc.url).follow(sessionId, { signal: signal() });
      const seen = record(run);
      expect(await settle(run)).toEqual({ result: { events: 10 } });
      expect(seen.gaps).toHaveLength(1);
      expect(run.gaps).toEqual(seen.gaps);
      expect(seen.gaps[0].first_available).toBe(seen.events[0].event_id);
      expect(seqs(seen.events)).toEqual(range(3, 12));
    });

    it('rejects with the server code when POST /execute is refused, and closes the stream', async () => {
      const svc = await server();
      const run = client(svc.url).execute(synthetic(undefined, { events: 0 }), { signal: signal() });
      const seen = record(run);
      const { error } = await settle(run);
      expect(error?.code).toBe('invalid_request');
      expect(error?.status).toBe(400);
      expect(seen.errors).toEqual([error]);
      await waitUntil(() => svc.service.streams.size === 0, { label: 'the stream to be closed on the server' });
    });

    it('rejects with invalid_session_id (400) from the stream route, without retrying', async () => {
      const svc = await server();
      const proxy = await proxyTo(svc);
      const { error } = await settle(client(proxy.url).follow('not-a-uuid', { signal: signal() }));
      expect(error?.code).toBe('invalid_session_id');
      expect(error?.status).toBe(400);
      expect(proxy.requests).toHaveLength(1);
    });

    it('stops with expired when no run starts within the idle timeout', async () => {
      const svc = await server({ streamIdleTimeoutMs: 200 });
      const proxy = await proxyTo(svc);
      const { error } = await settle(client(proxy.url).follow(newSessionId(), { signal: signal() }));
      expect(error?.code).toBe('expired');
      expect(proxy.requests).toHaveLength(1);
    });

    it('cancel(): the run ends cancelled and the result rejects with cancelled', async () => {
      const svc = await server();
      const run = client(svc.url).execute(synthetic(undefined, { events: 500, interval_ms: 20 }), { signal: signal() });
      const seen = record(run);
      await nextEvent(run, (event) => event.seq === 3, 'event 3');
      await run.cancel();
      const { error } = await settle(run);
      expect(error?.code).toBe('cancelled');
      expect(error?.done?.status).toBe('cancelled');
      expect(seen.events.at(-1)?.type).toBe('WORKFLOW_CANCELLED');
      expect(seen.events.length).toBeLessThan(100);
      expect(seqs(seen.events)).toEqual(range(1, seen.events.length));
    });

    it('waits out 503 too_many_streams (Retry-After), then follows to done', async () => {
      const svc = await server({ maxStreams: 1, retryMs: 1000 });
      const sessionId = newSessionId();
      // Only the followed session's stream: the occupant's own 200 may arrive after the 503.
      const statuses: Array<{ status: number; at: number }> = [];
      const observed: FetchLike = async (url, init) => {
        const response = await fetch(url, init);
        if (url.includes(`/timeline/stream/${sessionId}`)) statuses.push({ status: response.status, at: Date.now() });
        return response;
      };
      const sdk = client(svc.url, { fetch: observed });
      expect((await execute(svc.url, synthetic(sessionId, { events: 2 }))).status).toBe(200);

      const occupant = new AbortController();
      controllers.push(occupant);
      sdk.follow(newSessionId(), { signal: occupant.signal }).result.catch(() => undefined);
      await waitUntil(() => svc.service.streams.size === 1, { label: 'the one stream slot to be taken' });

      const run = sdk.follow(sessionId, { signal: signal() });
      await waitUntil(() => statuses.some((entry) => entry.status === 503), { label: 'a 503' });
      occupant.abort();
      expect(await settle(run)).toEqual({ result: { events: 2 } });
      const refused = statuses.find((entry) => entry.status === 503);
      const accepted = statuses.find((entry) => entry.status === 200 && entry.at > (refused?.at ?? 0));
      expect((accepted?.at ?? 0) - (refused?.at ?? 0)).toBeGreaterThanOrEqual(1000);
    });

    it('abort stops following: the server closes the stream and the run goes on', async () => {
      const svc = await server();
      const controller = new AbortController();
      const run = client(svc.url).execute(synthetic(undefined, { events: 20, interval_ms: 20 }), { signal: controller.signal });
      await nextEvent(run, (event) => event.seq === 2, 'event 2');
      controller.abort();
      expect((await settle(run)).error?.code).toBe('aborted');
      await waitUntil(() => svc.service.streams.size === 0, { label: 'the stream to be closed on the server' });
      await waitUntil(async () => (await history(svc.url, run.sessionId)).status === 'completed', {
        timeoutMs: WAIT_MS,
        label: 'the run to complete without a reader',
      });
    });
  });
}
