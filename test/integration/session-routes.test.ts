import request from 'supertest';
import type { SessionHistory } from '../../client-sdk/src/types';
import type { LogSlice } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { compareEventIds } from '../../server/timeline/event-id';
import { expectJsonError, metricSample } from '../helpers/api';
import { createTestService, newSessionId, startService, type RunningService, synthetic } from '../helpers/service';
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

  // Requests go through supertest on the app; streams are read on a real socket (svc.url).
  const app = () => svc.service.app;
  const run = (sessionId: string, events: number) => request(app()).post('/execute').send(synthetic(sessionId, { events })).expect(200);
  const runAsync = (sessionId: string, params: Record<string, unknown>) =>
    request(app()).post('/execute').set('Prefer', 'respond-async').send(synthetic(sessionId, params)).expect(202);
  const history = (sessionId: string) => request(app()).get(`/timeline/${sessionId}`);
  const cancel = (sessionId: string) => request(app()).post(`/timeline/${sessionId}/cancel`).type('json');

  describe('GET /timeline/:sessionId', () => {
    it('returns the history: events in seq and id order, done apart with its id, after every event', async () => {
      const sessionId = newSessionId();
      const ran = await run(sessionId, 6);
      const response = await history(sessionId).expect(200);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      const body: SessionHistory = response.body;
      expect(Object.keys(body).sort()).toEqual(['done', 'events', 'session_id', 'status']);
      expect(body.session_id).toBe(sessionId);
      expect(body.status).toBe('completed');
      expect(body.events).toHaveLength(ran.body.event_count);
      expect(body.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      for (let i = 1; i < body.events.length; i++) {
        expect(compareEventIds(body.events[i - 1].event_id, body.events[i].event_id)).toBe(-1);
      }
      expect(body.events.every((e) => e.session_id === sessionId)).toBe(true);
      expect(body.done).toEqual({ id: expect.any(String), status: 'completed', result: { events: 6 } });
      const doneId = body.done!.id;
      expect(compareEventIds(body.events.at(-1)!.event_id, doneId)).toBe(-1);
      expect(body.events.some((e) => e.event_id === doneId || (e as { type: string }).type === 'done')).toBe(false);
    });

    it('matches what a stream delivers, ids included', async () => {
      const sessionId = newSessionId();
      await run(sessionId, 4);
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const done = await reader.waitFor(isNamed('done'));
      const body: SessionHistory = (await history(sessionId).expect(200)).body;
      expect(body.events).toEqual(timelineEvents(reader));
      expect(body.done).toEqual({ id: done.id, ...JSON.parse(done.data) });
    });

    it('shows a running session as running with done null', async () => {
      const sessionId = newSessionId();
      await runAsync(sessionId, { events: 3, interval_ms: 300 });
      const during = await history(sessionId).expect(200);
      expect(during.body.status).toBe('running');
      expect(during.body.done).toBeNull();
      expect(during.body.events[0].type).toBe('WORKFLOW_START');

      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('done'));
      expect((await history(sessionId)).body.status).toBe('completed');
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
      const own = createTestService({ keepAliveMs: null }, { bus });
      const publish = async (sessionId: string, from: number, to: number) => {
        for (let seq = from; seq <= to; seq++) await bus.publish(sessionId, draft(sessionId, seq));
      };
      try {
        const long = newSessionId();
        expect(await bus.claimRun(long, 'owner', 10000)).toBe(true);
        await publish(long, 1, 1100);
        await bus.signalDone(long, { status: 'completed' });
        const full: SessionHistory = (await request(own.app).get(`/timeline/${long}`).expect(200)).body;
        expect(full.status).toBe('completed');
        expect(full.events.map((e) => e.seq)).toEqual(range(1, 1100));
        expect(full.done).toMatchObject({ status: 'completed' });

        // After the first page, the run publishes 600 more: the cap trims what that page held.
        const busy = newSessionId();
        expect(await bus.claimRun(busy, 'owner', 10000)).toBe(true);
        await publish(busy, 1, 1200);
        bus.burst = () => publish(busy, 1201, 1800);
        const retained: SessionHistory = (await request(own.app).get(`/timeline/${busy}`).expect(200)).body;
        expect(retained.status).toBe('running');
        expect(retained.events.map((e) => e.seq)).toEqual(range(601, 1800));
        expect(retained.done).toBeNull();
      } finally {
        await own.close();
      }
    });

    it('answers 404 session_not_found for a session never seen', async () => {
      const message = expectJsonError(await history(newSessionId()), 404, 'session_not_found');
      expect(message.length).toBeGreaterThan(0);
    });

    it('answers 404 for a session that was only streamed (a waiting stream does not make it seen)', async () => {
      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const ready = await reader.waitFor(isNamed('ready'));
      expect(JSON.parse(ready.data).status).toBe('waiting');
      expectJsonError(await history(sessionId), 404, 'session_not_found');
      expectJsonError(await cancel(sessionId), 404, 'session_not_found');
      reader.destroy();
      await reader.ended;
      expectJsonError(await history(sessionId), 404, 'session_not_found');
    });

    it('answers 400 invalid_session_id for an id that is not a UUID', async () => {
      for (const bad of ['abc', '123e4567e89b12d3a456426614174000', `${newSessionId()}x`]) {
        expectJsonError(await history(bad), 400, 'invalid_session_id');
        expectJsonError(await cancel(bad), 400, 'invalid_session_id');
      }
    });

    it('answers 400 invalid_session_id (not 500) for an id that is not even valid percent-encoding', async () => {
      for (const bad of ['%E0%A4%A', '%ZZ']) {
        expectJsonError(await history(bad), 400, 'invalid_session_id');
        expectJsonError(await cancel(bad), 400, 'invalid_session_id');
        expectJsonError(await request(app()).get(`/timeline/stream/${bad}`), 400, 'invalid_session_id');
      }
    });
  });

  describe('POST /timeline/:sessionId/cancel', () => {
    it('answers 202 cancelling for a running session, whose run then ends cancelled', async () => {
      const sessionId = newSessionId();
      await runAsync(sessionId, { events: 1000, interval_ms: 20 });
      const cancelled = await cancel(sessionId.toUpperCase()).expect(202);
      expect(cancelled.body).toEqual({ session_id: sessionId, status: 'cancelling' });

      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      const done = await reader.waitFor(isNamed('done'));
      expect(JSON.parse(done.data)).toEqual({ status: 'cancelled' });
      expect(timelineEvents<{ type: string }>(reader).at(-1)?.type).toBe('WORKFLOW_CANCELLED');
    });

    it('answers 404 session_not_found when no run was started', async () => {
      expectJsonError(await cancel(newSessionId()), 404, 'session_not_found');
    });

    it('answers 409 session_finished once the run finished', async () => {
      const sessionId = newSessionId();
      await run(sessionId, 1);
      expectJsonError(await cancel(sessionId), 409, 'session_finished');
      expect((await history(sessionId)).body.done?.status).toBe('completed');
    });
  });

  describe('health, readiness and metrics', () => {
    it('GET /healthz and GET /readyz answer 200', async () => {
      await request(app()).get('/healthz').expect(200);
      await request(app()).get('/readyz').expect(200).expect('Content-Type', /^application\/json/);
    });

    it('GET /readyz answers 503 not_ready when the bus cannot be reached, while /healthz stays 200', async () => {
      const down = createTestService({ keepAliveMs: null }, { bus: new UnreachableBus() });
      try {
        const message = expectJsonError(await request(down.app).get('/readyz'), 503, 'not_ready');
        expect(message).not.toContain('ECONNREFUSED');
        await request(down.app).get('/healthz').expect(200);
      } finally {
        await down.close();
      }
    });

    it('GET /metrics is Prometheus text whose counters move with a run and whose gauge counts open streams', async () => {
      const before = await request(app()).get('/metrics').expect(200).expect('Content-Type', /^text\/plain/);
      expect(before.text).toMatch(/^# HELP timeline_streams_open /m);
      expect(before.text).toMatch(/^# TYPE timeline_events_published_total counter$/m);
      expect(before.text).toMatch(/^# TYPE timeline_runs_total counter$/m);

      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('ready'));
      const open = (await request(app()).get('/metrics')).text;
      expect(metricSample(open, 'timeline_streams_open')).toBe(metricSample(before.text, 'timeline_streams_open') + 1);

      const ran = await run(sessionId, 5);
      await reader.ended;
      const after = (await request(app()).get('/metrics')).text;
      expect(
        metricSample(after, 'timeline_events_published_total') -
          metricSample(before.text, 'timeline_events_published_total'),
      ).toBe(ran.body.event_count);
      expect(
        metricSample(after, 'timeline_runs_total{outcome="completed"}') -
          metricSample(before.text, 'timeline_runs_total{outcome="completed"}'),
      ).toBe(1);
    });
  });

  describe('unknown routes and methods', () => {
    it('answers 404 not_found in JSON for an unknown route', async () => {
      expectJsonError(await request(app()).get('/nope'), 404, 'not_found');
      expectJsonError(await request(app()).post('/timeline'), 404, 'not_found');
      expectJsonError(await request(app()).get(`/timeline/${newSessionId()}/nope`), 404, 'not_found');
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
        const response = await request(app())[method.toLowerCase() as 'get' | 'put' | 'delete' | 'post'](path);
        expectJsonError(response, 405, 'method_not_allowed');
        expect(response.headers.allow).toBe(allowed);
      }
    });
  });

  it('GET / serves the demo page as HTML', async () => {
    const page = await request(app()).get('/').expect(200).expect('Content-Type', /^text\/html/);
    expect(page.text).toMatch(/<html/i);
  });
});

describe('CORS', () => {
  const ORIGIN = 'https://app.example';
  const PREFLIGHT_HEADERS = ['Content-Type', 'Prefer', 'Authorization', 'Last-Event-ID'];

  const preflight = (svc: RunningService, origin: string) =>
    request(svc.service.app)
      .options('/execute')
      .set('Origin', origin)
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', PREFLIGHT_HEADERS.join(', ').toLowerCase());

  describe('with CORS_ORIGINS set', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ keepAliveMs: null, corsOrigins: [ORIGIN] });
    });
    afterAll(() => svc.close());

    it('answers Access-Control-Allow-Origin to an allowed origin on JSON responses, errors included', async () => {
      const app = svc.service.app;
      await request(app).get('/healthz').set('Origin', ORIGIN).expect('Access-Control-Allow-Origin', ORIGIN);

      const sessionId = newSessionId();
      await request(app)
        .post('/execute')
        .set('Origin', ORIGIN)
        .send(synthetic(sessionId, { events: 1 }))
        .expect(200)
        .expect('Access-Control-Allow-Origin', ORIGIN);

      await request(app).get(`/timeline/${newSessionId()}`).set('Origin', ORIGIN).expect(404).expect('Access-Control-Allow-Origin', ORIGIN);
    });

    it('answers it on the SSE stream and on the 204 of a reconnect after done', async () => {
      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`, { headers: { Origin: ORIGIN } });
      expect(reader.status).toBe(200);
      expect(reader.headers['access-control-allow-origin']).toBe(ORIGIN);
      await reader.waitFor(isNamed('ready'));
      await request(svc.service.app).post('/execute').send(synthetic(sessionId, { events: 1 })).expect(200);
      const done = await reader.waitFor(isNamed('done'));

      await request(svc.service.app)
        .get(`/timeline/stream/${sessionId}`)
        .set('Origin', ORIGIN)
        .set('Last-Event-ID', done.id!)
        .expect(204)
        .expect('Access-Control-Allow-Origin', ORIGIN);
    });

    it('answers a preflight for POST /execute allowing Content-Type, Prefer, Authorization and Last-Event-ID', async () => {
      const response = await preflight(svc, ORIGIN).expect(204).expect('Access-Control-Allow-Origin', ORIGIN);
      expect(response.headers['access-control-allow-methods']?.split(',')).toContain('POST');
      const allowed = (response.headers['access-control-allow-headers'] ?? '')
        .split(',')
        .map((header: string) => header.trim().toLowerCase());
      for (const header of PREFLIGHT_HEADERS) expect(allowed).toContain(header.toLowerCase());
    });

    it('gives a disallowed origin no Access-Control-Allow-Origin', async () => {
      const evil = 'https://evil.example';
      const health = await request(svc.service.app).get('/healthz').set('Origin', evil).expect(200);
      expect(health.headers['access-control-allow-origin']).toBeUndefined();
      expect((await preflight(svc, evil)).headers['access-control-allow-origin']).toBeUndefined();
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

    const corsHeaders = (headers: Record<string, unknown>) =>
      Object.keys(headers).filter((name) => name.toLowerCase().startsWith('access-control-'));

    it('sends no CORS headers at all, on responses, streams and preflights', async () => {
      const app = svc.service.app;
      expect(corsHeaders((await request(app).get('/healthz').set('Origin', ORIGIN)).headers)).toEqual([]);
      // No origin but the service's own may POST (cross-site.test.ts).
      const run = await request(app).post('/execute').set('Origin', ORIGIN).send(synthetic(newSessionId(), { events: 1 })).expect(403);
      expect(run.body.error?.code).toBe('origin_not_allowed');
      expect(corsHeaders(run.headers)).toEqual([]);
      expect(corsHeaders((await preflight(svc, ORIGIN)).headers)).toEqual([]);
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`, { headers: { Origin: ORIGIN } });
      expect(reader.status).toBe(200);
      expect(corsHeaders(reader.headers)).toEqual([]);
      reader.destroy();
    });
  });
});
