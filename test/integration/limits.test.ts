import type { Express } from 'express';
import type Redis from 'ioredis';
import request, { type Response } from 'supertest';
import { expectJsonError, sendRaw } from '../helpers/api';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { createTestService, newSessionId, startRedisService, startService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, openReady, openSse, wireFrames } from '../helpers/sse-reader';
import { waitUntil, within } from '../helpers/wait';

/** A run that stays running until it is cancelled (or the service closes). */
const LONG_RUN = { events: 2, interval_ms: 60000 };

const startAsync = (app: Express, sessionId: string, headers: Record<string, string> = {}) =>
  request(app).post('/execute').set('Prefer', 'respond-async').set(headers).send(synthetic(sessionId, LONG_RUN));

describe('MAX_RUNS', () => {
  it('answers 503 too_many_runs with Retry-After beyond the limit, claims nothing, and admits again once a run ends', async () => {
    const svc = createTestService({ maxRuns: 2, retryMs: 2500, keepAliveMs: null });
    const cancel = (sessionId: string) => request(svc.app).post(`/timeline/${sessionId}/cancel`).type('json').expect(202);
    try {
      const held = newSessionId();
      const background = newSessionId();
      // A synchronous POST answers after its run ended and gave its slot back (`then` sends it now).
      const heldAnswer = request(svc.app).post('/execute').send(synthetic(held, LONG_RUN)).then((response) => response);
      await startAsync(svc.app, background).expect(202);
      await waitUntil(() => svc.runs.activeCount === 2, { label: 'both runs to start' });

      const refusedId = newSessionId();
      const refused = await startAsync(svc.app, refusedId);
      expectJsonError(refused, 503, 'too_many_runs');
      expect(refused.headers['retry-after']).toBe('3');
      // The refused session was not claimed: it can still be started, and nothing was recorded.
      expectJsonError(await request(svc.app).get(`/timeline/${refusedId}`), 404, 'session_not_found');
      // Validation comes first: a bad request is told so even when the instance is full.
      expectJsonError(await request(svc.app).post('/execute').send({ project_id: 'p' }), 400, 'invalid_request');

      await cancel(held);
      const heldResult = await within(heldAnswer, 10000, 'the held run to end');
      expect(heldResult.body.status).toBe('cancelled');
      await request(svc.app).post('/execute').send(synthetic(refusedId, { events: 1 })).expect(200);

      // Full again with two running: still refused.
      const another = newSessionId();
      await startAsync(svc.app, another).expect(202);
      expectJsonError(await startAsync(svc.app, newSessionId()), 503, 'too_many_runs');
      for (const sessionId of [background, another]) await cancel(sessionId);
      await waitUntil(() => svc.runs.activeCount === 0, { label: 'the cancelled runs to end' });
    } finally {
      await svc.close();
    }
  });

  it('never admits more than the limit under a burst of concurrent starts', async () => {
    const svc = createTestService({ maxRuns: 3, keepAliveMs: null });
    try {
      const ids = Array.from({ length: 12 }, newSessionId);
      const answers = await Promise.all(ids.map((sessionId) => startAsync(svc.app, sessionId)));
      const statuses = answers.map((answer) => answer.status);
      expect(statuses.filter((status) => status === 202)).toHaveLength(3);
      expect(statuses.filter((status) => status === 503)).toHaveLength(9);
      expect(svc.runs.activeCount).toBe(3);

      const started = ids.filter((_id, i) => statuses[i] === 202);
      for (const sessionId of started) await request(svc.app).post(`/timeline/${sessionId}/cancel`).type('json').expect(202);
      await waitUntil(() => svc.runs.activeCount === 0, { label: 'the cancelled runs to end' });
      const again = await Promise.all(ids.slice(0, 3).map((sessionId) => startAsync(svc.app, sessionId)));
      // Refused ones can start now; the three that ran are finished (409), not refused.
      for (const [i, answer] of again.entries()) expect(answer.status).toBe(started.includes(ids[i]) ? 409 : 202);
    } finally {
      await svc.close();
    }
  });
});

describe('CORS_ORIGINS', () => {
  const ORIGIN = 'https://app.example';
  const OTHER = 'http://localhost:5173';
  const API_KEY = 'cors-test-key';
  const auth = { Authorization: `Bearer ${API_KEY}` };

  const preflight = (svc: RunningService, path: string, origin: string, method: string, headers: string) =>
    request(svc.service.app)
      .options(path)
      .set({ Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers });

  const listOf = (value: string | undefined) => (value ?? '').split(',').map((item) => item.trim().toLowerCase());

  describe('an allow-list, with auth and tight limits', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ corsOrigins: [ORIGIN, OTHER], apiKey: API_KEY, maxStreams: 1, maxRuns: 1, keepAliveMs: null });
    });
    afterAll(() => svc.close());

    it('answers preflights of every route without credentials, allowing the contract headers', async () => {
      const cases: Array<[string, string, string]> = [
        ['/timeline/stream/' + newSessionId(), 'GET', 'authorization, last-event-id'],
        ['/execute', 'POST', 'content-type, prefer, authorization'],
        [`/timeline/${newSessionId()}`, 'GET', 'authorization'],
        [`/timeline/${newSessionId()}/cancel`, 'POST', 'authorization'],
      ];
      for (const [path, method, headers] of cases) {
        const response = await preflight(svc, path, OTHER, method, headers);
        expect({ path, status: response.status }).toEqual({ path, status: 204 });
        expect(response.headers['access-control-allow-origin']).toBe(OTHER);
        expect(listOf(response.headers['access-control-allow-methods'])).toContain(method.toLowerCase());
        const allowed = listOf(response.headers['access-control-allow-headers']);
        for (const header of ['content-type', 'prefer', 'authorization', 'last-event-id']) expect(allowed).toContain(header);
        expect(listOf(response.headers['vary'])).toContain('origin');
      }
    });

    it('answers them on a 401, and on a 503 with Retry-After exposed (streams and runs)', async () => {
      const unauthorized = await request(svc.service.app).post('/execute').set({ Origin: ORIGIN }).type('json').send('{}');
      expectJsonError(unauthorized, 401, 'unauthorized');
      expect(unauthorized.headers['access-control-allow-origin']).toBe(ORIGIN);

      const reader = await openReady(`${svc.url}/timeline/stream/${newSessionId()}`, { headers: auth });
      const tooManyStreams = await request(svc.service.app).get(`/timeline/stream/${newSessionId()}`).set({ Origin: ORIGIN, ...auth });
      expectJsonError(tooManyStreams, 503, 'too_many_streams');
      reader.destroy();

      const running = newSessionId();
      await startAsync(svc.service.app, running, auth).expect(202);
      const tooManyRuns = await startAsync(svc.service.app, newSessionId(), { Origin: ORIGIN, ...auth });
      expectJsonError(tooManyRuns, 503, 'too_many_runs');
      expect((await request(svc.service.app).post(`/timeline/${running}/cancel`).type('json').set(auth)).status).toBe(202);

      for (const response of [tooManyStreams, tooManyRuns]) {
        expect(response.headers['access-control-allow-origin']).toBe(ORIGIN);
        expect(response.headers['retry-after']).toMatch(/^[1-9]\d*$/);
        // Without it a browser's SDK could not read Retry-After.
        expect(listOf(response.headers['access-control-expose-headers'])).toContain('retry-after');
      }
    });

    it('gives look-alike origins nothing', async () => {
      for (const origin of ['https://app.example.evil', 'https://evil.app.example', 'http://app.example', 'null', `${ORIGIN}:443`]) {
        const health = await request(svc.service.app).get('/healthz').set({ Origin: origin });
        expect({ origin, allowed: health.headers['access-control-allow-origin'] }).toEqual({ origin, allowed: undefined });
        const response = await preflight(svc, '/execute', origin, 'POST', 'content-type');
        expect(response.headers['access-control-allow-origin']).toBeUndefined();
      }
    });
  });

  describe('"*"', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ corsOrigins: ['*'], keepAliveMs: null });
    });
    afterAll(() => svc.close());

    it('answers Access-Control-Allow-Origin: * on JSON, SSE, 204 and preflights, whatever the origin', async () => {
      const origin = 'https://anywhere.example';
      const sessionId = newSessionId();
      const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`, { headers: { Origin: origin } });
      expect(reader.headers['access-control-allow-origin']).toBe('*');
      const run = await request(svc.service.app).post('/execute').set('Origin', origin).send(synthetic(sessionId, { events: 1 })).expect(200);
      expect(run.headers['access-control-allow-origin']).toBe('*');
      const done = await reader.waitFor(isNamed('done'));
      const again = await request(svc.service.app).get(`/timeline/stream/${sessionId}`).set({ Origin: origin, 'Last-Event-ID': done.id! });
      expect(again.status).toBe(204);
      expect(again.headers['access-control-allow-origin']).toBe('*');
      const missing = await request(svc.service.app).get('/no/such/route').set({ Origin: origin });
      expect(missing.status).toBe(404);
      expect(missing.headers['access-control-allow-origin']).toBe('*');
      const response = await preflight(svc, `/timeline/stream/${sessionId}`, origin, 'GET', 'authorization, last-event-id');
      expect(response.status).toBe(204);
      expect(response.headers['access-control-allow-origin']).toBe('*');
      // `*` never covers Authorization: it has to be listed by name.
      expect(listOf(response.headers['access-control-allow-headers'])).toContain('authorization');
    });
  });
});

describe('untrusted input never reaches headers, SSE fields or Redis keys', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null });
  });
  afterAll(() => svc.close());

  it('rejects a Last-Event-ID with CR or LF as 400 invalid_last_event_id (?lastEventId=)', async () => {
    const variants = ['1-0%0D%0A', '1-0%0Aevent:%20x', '%0D%0A1-0', '1-0%0D', '1-0%0A', '%0A1-0', '1-0%0D%0Adata:%20x%0D%0A%0D%0A', '1-0%E2%80%A8'];
    for (const variant of variants) {
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}?lastEventId=${variant}`);
      if (reader.status === 200) reader.destroy();
      await reader.ended;
      expect({ variant, status: reader.status }).toEqual({ variant, status: 400 });
      expect(JSON.parse(reader.raw)).toEqual({ error: { code: 'invalid_last_event_id', message: expect.any(String) } });
    }
    // Surrounding spaces are still forgiven.
    const spaced = await openSse(`${svc.url}/timeline/stream/${newSessionId()}?lastEventId=%201-0%20`);
    expect(spaced.status).toBe(200);
    spaced.destroy();
  });

  it('never opens a stream for a header line with a bare LF (Node refuses the request)', async () => {
    const text = await sendRaw(
      svc.url,
      `GET /timeline/stream/${newSessionId()} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\nevent: injected\r\nConnection: close\r\n\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).not.toContain('text/event-stream');
    expect(text).not.toContain('injected');
  });

  it('sends only its own SSE fields, with the session id lower-cased', async () => {
    const sessionId = newSessionId().toUpperCase();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    await request(svc.service.app).post('/execute').send(synthetic(sessionId, { events: 2 })).expect(200);
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(reader.frames[0].data).session_id).toBe(sessionId.toLowerCase());
    expect(done.id).toMatch(/^\d+-\d+$/);
    for (const frame of wireFrames(reader.raw)) {
      for (const [name, value] of frame) {
        expect(`${name}: ${value}`).toMatch(/^(retry: \d+|event: (ready|done)|id: \d+-\d+|data: \{.*\})$/);
      }
    }
  });

  describe('on Redis', () => {
    let redis: RedisServer;
    let onRedis: RunningService;
    let monitor: Redis | undefined;
    beforeAll(async () => {
      redis = await startRedisServer();
      onRedis = await startRedisService(redis.url, { apiKey: 'ids-key', keepAliveMs: null });
    });
    afterAll(async () => {
      monitor?.disconnect();
      await onRedis?.close();
      await redis?.stop();
    });

    it('never sends a session id that is not a UUID to Redis (stream, history, cancel, execute; auth on)', async () => {
      const commands: string[] = [];
      monitor = await redis.admin().monitor();
      monitor.on('monitor', (_time: string, args: string[]) => commands.push(args.join(' ')));

      const poison = 'deadbeef-dead-beef-dead-beefdeadbeef';
      const pathIds = [
        `${poison}x`,
        `${poison}%0A`,
        `${poison}%0D%0A`,
        `%7B${poison}%7D`,
        `${poison}%7D:meta`,
        `${poison.slice(0, -1)}g`,
        `${poison}%00`,
        `%20${poison}`,
        `..%2F${poison}`,
        'deadbeef',
        `${poison.replace(/-/g, '')}`,
        `${poison.toUpperCase()}:x`,
      ];
      const auth = { Authorization: 'Bearer ids-key' };
      const answers: Response[] = [];
      for (const id of pathIds) {
        answers.push(
          await request(onRedis.service.app).get(`/timeline/stream/${id}`).set(auth),
          await request(onRedis.service.app).get(`/timeline/${id}`).set(auth),
          await request(onRedis.service.app).post(`/timeline/${id}/cancel`).type('json').set(auth),
        );
      }
      for (const answer of answers) expectJsonError(answer, 400, 'invalid_session_id');
      for (const id of pathIds.map(decodeURIComponent)) {
        const answer = await request(onRedis.service.app).post('/execute').set(auth).send({ ...synthetic(undefined, { events: 1 }), session_id: id });
        expectJsonError(answer, 400, 'invalid_request');
      }

      // A valid request after them: once Redis has seen it, it has seen everything before it.
      const marker = newSessionId();
      await request(onRedis.service.app).post('/execute').set(auth).send(synthetic(marker, { events: 1 })).expect(200);
      await waitUntil(() => commands.some((command) => command.includes(marker)), { label: 'MONITOR to show the marker' });
      expect(commands.filter((command) => command.toLowerCase().includes('deadbeef'))).toEqual([]);
    });
  });
});
