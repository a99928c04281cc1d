import type { LogSlice } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { compareEventIds } from '../../server/timeline/event-id';
import { cancelSession, executeAsync, expectJsonError, getHistory, metricSample, request } from '../helpers/api';
import { execute, newSessionId, startService, type RunningService, synthetic } from '../helpers/service';
import { isNamed, openSse, timelineEvents } from '../helpers/sse-reader';
import { draft, range } from '../helpers/timeline-fixtures';


/** A real in-memory bus whose readiness probe fails, as an unreachable Redis would. */
class UnreachableBus extends MemoryBus {
  override async ping(): Promise<void> {
    throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
  }
}

describe('session routes', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null });
  });
  afterAll(() => svc.close());

  describe('GET /timeline/:sessionId', () => {
    it('returns the history: events in seq and id order, done apart with its id, after every event', async () => {
      const sessionId = newSessionId();
      const run = await execute(svc.url, synthetic(sessionId, { events: 6 }));
      const response = await getHistory(svc.url, sessionId);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      const history = response.json;
      expect(Object.keys(history).sort()).toEqual(['done', 'events', 'session_id', 'status']);
      expect(history.session_id).toBe(sessionId);
      expect(history.status).toBe('completed');
      expect(history.events).toHaveLength(run.body.event_count);
      expect(history.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      for (let i = 1; i < history.events.length; i++) {
        expect(compareEventIds(history.events[i - 1].event_id, history.events[i].event_id)).toBe(-1);
      }
      expect(history.events.every((e) => e.session_id === sessionId)).toBe(true);
      expect(history.done).toEqual({ id: expect.any(String), status: 'completed', result: { events: 6 } });
      const doneId = history.done!.id;
      expect(compareEventIds(history.events.at(-1)!.event_id, doneId)).toBe(-1);
      expect(history.events.some((e) => e.event_id === doneId || (e as { type: string }).type === 'done')).toBe(false);
    });

    it('matches what a stream delivers, ids included', async () => {
      const sessionId = newSessionId();
      await execute(svc.url, synthetic(sessionId, { events: 4 }));
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const done = await reader.waitFor(isNamed('done'));
      const history = (await getHistory(svc.url, sessionId)).json;
      expect(history.events).toEqual(timelineEvents(reader));
      expect(history.done).toEqual({ id: done.id, ...JSON.parse(done.data) });
    });

    it('shows a running session as running with done null', async () => {
      const sessionId = newSessionId();
      const started = await executeAsync(svc.url, synthetic(sessionId, { events: 3, interval_ms: 300 }));
      expect(started.status).toBe(202);
      const during = await getHistory(svc.url, sessionId);
      expect(during.status).toBe(200);
      expect(during.json.status).toBe('running');
      expect(during.json.done).toBeNull();
      expect(during.json.events[0].type).toBe('WORKFLOW_START');

      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('done'));
      expect((await getHistory(svc.url, sessionId)).json.status).toBe('completed');
    });

    it('returns a log longer than a read page in full, and what is retained when the cap trims faster than it pages', async () => {
      /** A memory bus that runs `burst` (once) right after a read, as a run publishing between two pages. */
      class BurstAfterRead extends MemoryBus {
        burst: (() => Promise<void>) | null = null;
        override async read(sessionId: string, afterId: string | null, limit?: number): Promise<LogSlice> {
          const slice = await super.read(sessionId, afterId, limit);
          const burst = this.burst;
          this.burst = null;
          if (burst) await burst();
          return slice;
        }
      }
      const bus = new BurstAfterRead({ maxEventsPerSession: 1200 });
      const own = await startService({ keepAliveMs: null }, { bus });
      const publish = async (sessionId: string, from: number, to: number) => {
        for (let seq = from; seq <= to; seq++) await bus.publish(sessionId, draft(sessionId, seq));
      };
      try {
        const long = newSessionId();
        expect(await bus.claimRun(long, 'owner', 10000)).toBe(true);
        await publish(long, 1, 1100);
        await bus.signalDone(long, { status: 'completed' });
        const full = (await getHistory(own.url, long)).json;
        expect(full.status).toBe('completed');
        expect(full.events.map((e) => e.seq)).toEqual(range(1, 1100));
        expect(full.done).toMatchObject({ status: 'completed' });

        // After the first page, the run publishes 600 more: the cap trims what that page held.
        const busy = newSessionId();
        expect(await bus.claimRun(busy, 'owner', 10000)).toBe(true);
        await publish(busy, 1, 1200);
        bus.burst = () => publish(busy, 1201, 1800);
        const retained = (await getHistory(own.url, busy)).json;
        expect(retained.status).toBe('running');
        expect(retained.events.map((e) => e.seq)).toEqual(range(601, 1800));
        expect(retained.done).toBeNull();
      } finally {
        await own.close();
      }
    });

    it('answers 404 session_not_found for a session never seen', async () => {
      const message = expectJsonError(await getHistory(svc.url, newSessionId()), 404, 'session_not_found');
      expect(message.length).toBeGreaterThan(0);
    });

    it('answers 404 for a session that was only streamed (a waiting stream does not make it seen)', async () => {
      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const ready = await reader.waitFor(isNamed('ready'));
      expect(JSON.parse(ready.data).status).toBe('waiting');
      expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
      expectJsonError(await cancelSession(svc.url, sessionId), 404, 'session_not_found');
      reader.destroy();
      await reader.ended;
      expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
    });

    it('answers 400 invalid_session_id for an id that is not a UUID', async () => {
      for (const bad of ['abc', '123e4567e89b12d3a456426614174000', `${newSessionId()}x`]) {
        expectJsonError(await getHistory(svc.url, bad), 400, 'invalid_session_id');
        expectJsonError(await cancelSession(svc.url, bad), 400, 'invalid_session_id');
      }
    });

    it('answers 400 invalid_session_id (not 500) for an id that is not even valid percent-encoding', async () => {
      for (const bad of ['%E0%A4%A', '%ZZ']) {
        expectJsonError(await getHistory(svc.url, bad), 400, 'invalid_session_id');
        expectJsonError(await cancelSession(svc.url, bad), 400, 'invalid_session_id');
        expectJsonError(await request(`${svc.url}/timeline/stream/${bad}`), 400, 'invalid_session_id');
      }
    });
  });

  describe('POST /timeline/:sessionId/cancel', () => {
    it('answers 202 cancelling for a running session, whose run then ends cancelled', async () => {
      const sessionId = newSessionId();
      const started = await executeAsync(svc.url, synthetic(sessionId, { events: 1000, interval_ms: 20 }));
      expect(started.status).toBe(202);
      const cancel = await cancelSession(svc.url, sessionId.toUpperCase());
      expect(cancel.status).toBe(202);
      expect(cancel.json).toEqual({ session_id: sessionId, status: 'cancelling' });

      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const done = await reader.waitFor(isNamed('done'));
      expect(JSON.parse(done.data)).toEqual({ status: 'cancelled' });
      expect(timelineEvents<{ type: string }>(reader).at(-1)?.type).toBe('WORKFLOW_CANCELLED');
    });

    it('answers 404 session_not_found when no run was started', async () => {
      expectJsonError(await cancelSession(svc.url, newSessionId()), 404, 'session_not_found');
    });

    it('answers 409 session_finished once the run finished', async () => {
      const sessionId = newSessionId();
      await execute(svc.url, synthetic(sessionId, { events: 1 }));
      expectJsonError(await cancelSession(svc.url, sessionId), 409, 'session_finished');
      expect((await getHistory(svc.url, sessionId)).json.done?.status).toBe('completed');
    });
  });

  describe('health, readiness and metrics', () => {
    it('GET /healthz and GET /readyz answer 200', async () => {
      const health = await request(`${svc.url}/healthz`);
      expect(health.status).toBe(200);
      const ready = await request(`${svc.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.headers.get('content-type')).toMatch(/^application\/json/);
    });

    it('GET /readyz answers 503 not_ready when the bus cannot be reached, while /healthz stays 200', async () => {
      const down = await startService({ keepAliveMs: null }, { bus: new UnreachableBus() });
      try {
        const ready = await request(`${down.url}/readyz`);
        const message = expectJsonError(ready, 503, 'not_ready');
        expect(message).not.toContain('ECONNREFUSED');
        expect((await request(`${down.url}/healthz`)).status).toBe(200);
      } finally {
        await down.close();
      }
    });

    it('GET /metrics is Prometheus text whose counters move with a run and whose gauge counts open streams', async () => {
      const before = await request(`${svc.url}/metrics`);
      expect(before.status).toBe(200);
      expect(before.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(before.text).toMatch(/^# HELP timeline_streams_open /m);
      expect(before.text).toMatch(/^# TYPE timeline_events_published_total counter$/m);
      expect(before.text).toMatch(/^# TYPE timeline_runs_total counter$/m);

      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('ready'));
      const open = (await request(`${svc.url}/metrics`)).text;
      expect(metricSample(open, 'timeline_streams_open')).toBe(metricSample(before.text, 'timeline_streams_open') + 1);

      const run = await execute(svc.url, synthetic(sessionId, { events: 5 }));
      expect(run.status).toBe(200);
      await reader.ended;
      const after = (await request(`${svc.url}/metrics`)).text;
      expect(
        metricSample(after, 'timeline_events_published_total') -
          metricSample(before.text, 'timeline_events_published_total'),
      ).toBe(run.body.event_count);
      expect(
        metricSample(after, 'timeline_runs_total{outcome="completed"}') -
          metricSample(before.text, 'timeline_runs_total{outcome="completed"}'),
      ).toBe(1);
    });
  });

  describe('unknown routes and methods', () => {
    it('answers 404 not_found in JSON for an unknown route', async () => {
      expectJsonError(await request(`${svc.url}/nope`), 404, 'not_found');
      expectJsonError(await request(`${svc.url}/timeline`, { method: 'POST' }), 404, 'not_found');
      expectJsonError(await request(`${svc.url}/timeline/${newSessionId()}/nope`), 404, 'not_found');
    });

    it('answers 405 in JSON with an Allow header for a wrong method on a known path', async () => {
      const cases: Array<[string, string, string]> = [
        ['GET', '/execute', 'POST'],
        ['PUT', '/execute', 'POST'],
        ['DELETE', `/timeline/${newSessionId()}`, 'GET'],
        ['POST', `/timeline/${newSessionId()}`, 'GET'],
        ['GET', `/timeline/${newSessionId()}/cancel`, 'POST'],
        ['POST', `/timeline/stream/${newSessionId()}`, 'GET'],
      ];
      for (const [method, path, allowed] of cases) {
        const response = await request(`${svc.url}${path}`, { method });
        expectJsonError(response, 405, 'method_not_allowed');
        expect(response.headers.get('allow')).toBe(allowed);
      }
    });
  });

  it('GET / serves the demo page as HTML', async () => {
    const page = await request(`${svc.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toMatch(/<html/i);
  });
});

describe('CORS', () => {
  const ORIGIN = 'https://app.example';
  const PREFLIGHT_HEADERS = ['Content-Type', 'Prefer', 'Authorization', 'Last-Event-ID'];

  const preflight = (url: string, origin: string) =>
    request(`${url}/execute`, {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': PREFLIGHT_HEADERS.join(', ').toLowerCase(),
      },
    });

  describe('with CORS_ORIGINS set', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ keepAliveMs: null, corsOrigins: [ORIGIN] });
    });
    afterAll(() => svc.close());

    it('answers Access-Control-Allow-Origin to an allowed origin on JSON responses, errors included', async () => {
      const health = await request(`${svc.url}/healthz`, { headers: { Origin: ORIGIN } });
      expect(health.headers.get('access-control-allow-origin')).toBe(ORIGIN);

      const sessionId = newSessionId();
      const run = await execute(svc.url, synthetic(sessionId, { events: 1 }), { Origin: ORIGIN });
      expect(run.status).toBe(200);
      expect(run.headers.get('access-control-allow-origin')).toBe(ORIGIN);

      const missing = await request(`${svc.url}/timeline/${newSessionId()}`, { headers: { Origin: ORIGIN } });
      expect(missing.status).toBe(404);
      expect(missing.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    });

    it('answers it on the SSE stream and on the 204 of a reconnect after done', async () => {
      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`, { headers: { Origin: ORIGIN } });
      expect(reader.status).toBe(200);
      expect(reader.headers['access-control-allow-origin']).toBe(ORIGIN);
      await reader.waitFor(isNamed('ready'));
      await execute(svc.url, synthetic(sessionId, { events: 1 }));
      const done = await reader.waitFor(isNamed('done'));

      const again = await openSse(`${svc.url}/timeline/stream/${sessionId}`, {
        headers: { Origin: ORIGIN, 'Last-Event-ID': done.id! },
      });
      expect(again.status).toBe(204);
      expect(again.headers['access-control-allow-origin']).toBe(ORIGIN);
      await again.ended;
    });

    it('answers a preflight for POST /execute allowing Content-Type, Prefer, Authorization and Last-Event-ID', async () => {
      const response = await preflight(svc.url, ORIGIN);
      expect(response.status).toBe(204);
      expect(response.headers.get('access-control-allow-origin')).toBe(ORIGIN);
      expect(response.headers.get('access-control-allow-methods')?.split(',')).toContain('POST');
      const allowed = (response.headers.get('access-control-allow-headers') ?? '')
        .split(',')
        .map((header) => header.trim().toLowerCase());
      for (const header of PREFLIGHT_HEADERS) expect(allowed).toContain(header.toLowerCase());
    });

    it('gives a disallowed origin no Access-Control-Allow-Origin', async () => {
      const evil = 'https://evil.example';
      const health = await request(`${svc.url}/healthz`, { headers: { Origin: evil } });
      expect(health.status).toBe(200);
      expect(health.headers.get('access-control-allow-origin')).toBeNull();
      expect((await preflight(svc.url, evil)).headers.get('access-control-allow-origin')).toBeNull();
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`, { headers: { Origin: evil } });
      expect(reader.status).toBe(200);
      expect(reader.headers['access-control-allow-origin']).toBeUndefined();
      reader.destroy();
    });
  });

  describe('with CORS_ORIGINS unset', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ keepAliveMs: null });
    });
    afterAll(() => svc.close());

    const corsHeaders = (headers: Headers | Record<string, unknown>) => {
      const names: string[] = [];
      if (headers instanceof Headers) headers.forEach((_value, name) => names.push(name));
      else names.push(...Object.keys(headers));
      return names.filter((name) => name.toLowerCase().startsWith('access-control-'));
    };

    it('sends no CORS headers at all, on responses, streams and preflights', async () => {
      expect(corsHeaders((await request(`${svc.url}/healthz`, { headers: { Origin: ORIGIN } })).headers)).toEqual([]);
      // No origin but the service's own may POST (cross-site.test.ts).
      const run = await execute(svc.url, synthetic(newSessionId(), { events: 1 }), { Origin: ORIGIN });
      expect({ status: run.status, code: run.body.error?.code }).toEqual({ status: 403, code: 'origin_not_allowed' });
      expect(corsHeaders(run.headers)).toEqual([]);
      expect(corsHeaders((await preflight(svc.url, ORIGIN)).headers)).toEqual([]);
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`, { headers: { Origin: ORIGIN } });
      expect(reader.status).toBe(200);
      expect(corsHeaders(reader.headers)).toEqual([]);
      reader.destroy();
    });
  });
});
