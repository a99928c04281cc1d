import jwt from 'jsonwebtoken';
import request, { type Response } from 'supertest';
import { z } from 'zod';
import { parseTimeline } from '../../client-sdk/src';
import { defineWorkflow } from '../../server';
import { ModelError } from '../../server/models/model';
import type { Service } from '../../server/service';
import { BusUnavailableError, type LiveListener, type LogSlice, type Subscription } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { expectAsyncApi } from '../helpers/asyncapi';
import { expectOpenApi } from '../helpers/openapi';
import { createTestService, newSessionId } from '../helpers/service';
import { waitUntil } from '../helpers/wait';

/**
 * Real requests, good and bad, to every route, each answer checked against docs/openapi.yaml
 * (status declared, required headers, content type, body schema), and the frames of real
 * streams against docs/asyncapi.yaml.
 */

const JWT_SECRET = 'contract-test-secret';
const tokenFor = (sub: string) => jwt.sign({ sub }, JWT_SECRET, { algorithm: 'HS256', expiresIn: 300 });

/** Emits `count` steps, then returns `{ count }`. */
const steps = defineWorkflow({
  name: 'steps',
  params: z.object({ count: z.int().min(1).max(20).default(2) }),
  async run({ params }, ctx) {
    for (let i = 1; i <= params.count; i++) {
      await ctx.emit({ type: 'AGENT_MESSAGE', status: 'SUCCESS', message: `step ${i}`, agent_name: 'tester', details: { i } });
    }
    return { count: params.count };
  },
});
/** Runs until its signal aborts (a cancel or a shutdown). */
const endless = defineWorkflow({
  name: 'endless',
  async run(_input, ctx) {
    await ctx.emit({ type: 'AGENT_START', status: 'IN_PROGRESS', message: 'waiting for a cancel' });
    await new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }));
  },
});
const overloaded = defineWorkflow({
  name: 'overloaded',
  async run() {
    throw new ModelError('model_overloaded', 'The model provider is overloaded');
  },
});
const buggy = defineWorkflow({
  name: 'buggy',
  async run() {
    throw new Error('a bug');
  },
});
const workflows = [steps, endless, overloaded, buggy];

const body = (workflow: string, extra: Record<string, unknown> = {}) => ({ project_id: 'p1', query: 'q', workflow, ...extra });

/** A bus whose Redis is gone: every call that needs it fails as RedisBus fails then. */
class UnreachableBus extends MemoryBus {
  private down = (): never => {
    throw new BusUnavailableError('connect ECONNREFUSED');
  };
  override async read(): Promise<LogSlice> {
    return this.down();
  }
  override async subscribe(_sessionId: string, _listener: LiveListener): Promise<Subscription> {
    return this.down();
  }
  override async claimRun(): Promise<boolean> {
    return this.down();
  }
  override async requestCancel(): Promise<never> {
    return this.down();
  }
  override async ping(): Promise<void> {
    this.down();
  }
}

/** Checks the answer against docs/openapi.yaml and the status (and code) a case is meant to get. */
async function answer(test: request.Test, status: number, code?: string): Promise<Response> {
  const response = await test;
  expectOpenApi(response);
  expect({ status: response.status, code: response.body?.error?.code }).toEqual({ status, code });
  return response;
}

describe('every route answers as docs/openapi.yaml says', () => {
  let svc: Service;
  let tight: Service;
  let auth: Service;
  let down: Service;
  beforeAll(() => {
    svc = createTestService({ keepAliveMs: null }, { workflows });
    tight = createTestService(
      { maxRuns: 1, maxStreams: 1, bodyLimitBytes: 1024, streamIdleTimeoutMs: 1000, keepAliveMs: 100, maxEventsPerSession: 3 },
      { workflows },
    );
    auth = createTestService({ jwtSecret: JWT_SECRET, keepAliveMs: null }, { workflows });
    down = createTestService({ keepAliveMs: null }, { bus: new UnreachableBus() });
  });
  afterAll(async () => {
    await Promise.all([svc, tight, auth, down].map((service) => service.close()));
  });

  it('POST /execute: 200, 202, 400 (both codes), 409, 413, 415, 500 and 502', async () => {
    const run = await answer(request(svc.app).post('/execute').send(body('steps')), 200);
    expect(run.body).toMatchObject({ status: 'completed', result: { count: 2 }, event_count: 4 });
    const accepted = await answer(request(svc.app).post('/execute').set('Prefer', 'respond-async').send(body('steps')), 202);
    expect(accepted.body.stream_url).toBe(`/timeline/stream/${accepted.body.session_id}`);

    await answer(request(svc.app).post('/execute').send({ query: 'q' }), 400, 'invalid_request');
    await answer(request(svc.app).post('/execute').send(body('steps', { params: { count: 0 } })), 400, 'invalid_request');
    await answer(request(svc.app).post('/execute').type('json').send('{"project_id":'), 400, 'invalid_json');
    const conflict = await answer(request(svc.app).post('/execute').send(body('steps', { session_id: run.body.session_id })), 409, 'session_conflict');
    expect(conflict.body.session_id).toBe(run.body.session_id);
    await answer(request(tight.app).post('/execute').send(body('steps', { query: 'q'.repeat(2000) })), 413, 'payload_too_large');
    await answer(
      request(svc.app).post('/execute').set('Content-Type', 'application/json; charset=latin1').send(JSON.stringify(body('steps'))),
      415,
      'unsupported_encoding',
    );
    await answer(request(svc.app).post('/execute').set('Content-Encoding', 'x-unknown').send(body('steps')), 415, 'unsupported_encoding');
    const bug = await answer(request(svc.app).post('/execute').send(body('buggy')), 500, 'internal_error');
    expect(bug.body.session_id).toEqual(expect.any(String));
    const provider = await answer(request(svc.app).post('/execute').send(body('overloaded')), 502, 'workflow_failed');
    expect(provider.body.session_id).toEqual(expect.any(String));
  });

  it('POST /execute and cancel: 503 too_many_runs beside a running run, which a 202 cancel ends; 409 once it ended', async () => {
    const running = await answer(request(tight.app).post('/execute').set('Prefer', 'respond-async').send(body('endless')), 202);
    const full = await answer(request(tight.app).post('/execute').send(body('steps')), 503, 'too_many_runs');
    expect(full.headers['retry-after']).toMatch(/^\d+$/);
    const sessionId = running.body.session_id as string;
    const cancel = await answer(request(tight.app).post(`/timeline/${sessionId}/cancel`).type('json'), 202);
    expect(cancel.body).toEqual({ session_id: sessionId, status: 'cancelling' });
    // The stream of a finished session replays it and ends: here, once `done` came.
    const stream = await answer(request(tight.app).get(`/timeline/stream/${sessionId}`), 200);
    expect(parseTimeline(stream.text).done).toMatchObject({ status: 'cancelled' });
    await answer(request(tight.app).post(`/timeline/${sessionId}/cancel`).type('json'), 409, 'session_finished');
  });

  it('POST /execute: 503 shutdown for a held synchronous run that the shutdown ends', async () => {
    const closing = createTestService({ shutdownGraceMs: 50, keepAliveMs: null }, { workflows });
    const held = request(closing.app).post('/execute').send(body('endless')).then((response) => response);
    await waitUntil(() => closing.runs.activeCount === 1, { label: 'the run to start' });
    await closing.close();
    const response = await held;
    expectOpenApi(response);
    expect({ status: response.status, code: response.body.error.code }).toEqual({ status: 503, code: 'shutdown' });
  });

  it('GET /timeline/stream/:id: 200 (then the stream ends after done), 204 after done, 400 (both codes)', async () => {
    const run = await request(svc.app).post('/execute').send(body('steps')).expect(200);
    const sessionId = run.body.session_id as string;
    const stream = await answer(request(svc.app).get(`/timeline/stream/${sessionId}`), 200);
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    const { done } = parseTimeline(stream.text);
    await answer(request(svc.app).get(`/timeline/stream/${sessionId}`).set('Last-Event-ID', done!.id), 204);
    await answer(request(svc.app).get(`/timeline/stream/${sessionId}?lastEventId=${done!.id}`), 204);
    await answer(request(svc.app).get('/timeline/stream/not-a-uuid'), 400, 'invalid_session_id');
    await answer(request(svc.app).get(`/timeline/stream/${sessionId}`).set('Last-Event-ID', 'nope'), 400, 'invalid_last_event_id');
  });

  it('GET /timeline/stream/:id: 503 too_many_streams beside an open stream, which expires after its idle timeout', async () => {
    const waiting = request(tight.app).get(`/timeline/stream/${newSessionId()}`).then((response) => response);
    await waitUntil(() => tight.streams.size === 1, { label: 'the first stream to open' });
    const refused = await answer(request(tight.app).get(`/timeline/stream/${newSessionId()}`), 503, 'too_many_streams');
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    const expired = await waiting;
    expectOpenApi(expired);
    expect(expired.status).toBe(200);
  });

  it('GET /timeline/:id and cancel: 200, 404, 400', async () => {
    const run = await request(svc.app).post('/execute').send(body('steps', { params: { count: 3 } })).expect(200);
    const history = await answer(request(svc.app).get(`/timeline/${run.body.session_id}`), 200);
    expect(history.body.events).toHaveLength(5);
    expect(history.body.done).toMatchObject({ status: 'completed', result: { count: 3 } });
    await answer(request(svc.app).get(`/timeline/${newSessionId()}`), 404, 'session_not_found');
    await answer(request(svc.app).post(`/timeline/${newSessionId()}/cancel`).type('json'), 404, 'session_not_found');
    await answer(request(svc.app).get('/timeline/123'), 400, 'invalid_session_id');
    await answer(request(svc.app).post('/timeline/123/cancel').type('json'), 400, 'invalid_session_id');
    await answer(request(svc.app).post(`/timeline/${newSessionId()}/cancel`), 415, 'unsupported_media_type');
  });

  it('every protected route: 401 without a credential, 404 session_not_found for another caller', async () => {
    const sessionId = newSessionId();
    await answer(request(auth.app).post('/execute').send(body('steps')), 401, 'unauthorized');
    await answer(request(auth.app).get(`/timeline/stream/${sessionId}`), 401, 'unauthorized');
    await answer(request(auth.app).get(`/timeline/${sessionId}`).set('Authorization', 'Bearer nope'), 401, 'unauthorized');
    await answer(request(auth.app).post(`/timeline/${sessionId}/cancel`).type('json'), 401, 'unauthorized');

    const alice = `Bearer ${tokenFor('alice')}`;
    const bob = `Bearer ${tokenFor('bob')}`;
    await answer(request(auth.app).post('/execute').set('Authorization', alice).send(body('steps', { session_id: sessionId })), 200);
    await answer(request(auth.app).get(`/timeline/stream/${sessionId}`).set('Authorization', bob), 404, 'session_not_found');
    await answer(request(auth.app).get(`/timeline/${sessionId}`).set('Authorization', bob), 404, 'session_not_found');
    await answer(request(auth.app).post(`/timeline/${sessionId}/cancel`).type('json').set('Authorization', bob), 404, 'session_not_found');
    await answer(
      request(auth.app).post('/execute').set('Authorization', bob).send(body('steps', { session_id: sessionId })),
      404,
      'session_not_found',
    );
    await answer(request(auth.app).get(`/timeline/stream/${sessionId}?access_token=${tokenFor('alice')}`), 200);
  });

  it('bus unreachable: 503 bus_unavailable on stream, execute, history and cancel; /readyz 503 not_ready', async () => {
    const sessionId = newSessionId();
    for (const test of [
      request(down.app).get(`/timeline/stream/${sessionId}`),
      request(down.app).post('/execute').send(body('agents')),
      request(down.app).get(`/timeline/${sessionId}`),
      request(down.app).post(`/timeline/${sessionId}/cancel`).type('json'),
    ]) {
      const response = await answer(test, 503, 'bus_unavailable');
      expect(response.headers['retry-after']).toMatch(/^\d+$/);
    }
    await answer(request(down.app).get('/readyz'), 503, 'not_ready');
    await answer(request(down.app).get('/healthz'), 200);
  });

  it('probes, metrics and the demo page: 200, and 404 for a file that is not there', async () => {
    await answer(request(svc.app).get('/healthz'), 200);
    await answer(request(svc.app).get('/readyz'), 200);
    const metrics = await answer(request(svc.app).get('/metrics'), 200);
    expect(metrics.text).toContain('timeline_runs_total');
    await answer(request(svc.app).get('/'), 200);
    await answer(request(svc.app).get('/assets/styles.css'), 200);
    await answer(request(svc.app).get('/assets/nope.js'), 404, 'not_found');
  });

  it('paths and methods the document does not have: 404 not_found, 405 method_not_allowed with Allow', async () => {
    await answer(request(svc.app).get('/nope'), 404, 'not_found');
    await answer(request(svc.app).delete('/execute'), 405, 'method_not_allowed');
    await answer(request(svc.app).post(`/timeline/stream/${newSessionId()}`), 405, 'method_not_allowed');
    await answer(request(svc.app).get(`/timeline/${newSessionId()}/cancel`), 405, 'method_not_allowed');
  });

  it('a shut-down instance: 503 shutting_down with Retry-After on every route but /healthz', async () => {
    const drained = createTestService({ keepAliveMs: null });
    await drained.close();
    const sessionId = newSessionId();
    for (const test of [
      request(drained.app).post('/execute').send(body('agents')),
      request(drained.app).get(`/timeline/stream/${sessionId}`),
      request(drained.app).get(`/timeline/${sessionId}`),
      request(drained.app).post(`/timeline/${sessionId}/cancel`).type('json'),
      request(drained.app).get('/readyz'),
      request(drained.app).get('/metrics'),
      request(drained.app).get('/'),
      request(drained.app).get('/assets/styles.css'),
    ]) {
      const response = await answer(test, 503, 'shutting_down');
      expect(response.headers['retry-after']).toMatch(/^\d+$/);
    }
    await answer(request(drained.app).get('/healthz'), 200);
  });
});

describe("the stream's frames are the messages of docs/asyncapi.yaml", () => {
  let svc: Service;
  beforeAll(() => {
    svc = createTestService({ keepAliveMs: 50, streamIdleTimeoutMs: 1000, maxEventsPerSession: 3 }, { workflows });
  });
  afterAll(() => svc.close());

  const streamOf = async (sessionId: string) => {
    const response = await request(svc.app).get(`/timeline/stream/${sessionId}`).expect(200);
    return expectAsyncApi(response.text);
  };

  it('ready, the events, done (completed, failed and cancelled)', async () => {
    const completed = await request(svc.app).post('/execute').send(body('steps', { params: { count: 1 } })).expect(200);
    expect(await streamOf(completed.body.session_id)).toEqual(['ready', 'timelineEvent', 'timelineEvent', 'timelineEvent', 'done']);
    const failed = await request(svc.app).post('/execute').send(body('overloaded')).expect(502);
    expect(await streamOf(failed.body.session_id)).toEqual(['ready', 'timelineEvent', 'timelineEvent', 'done']);
    const cancelled = await request(svc.app).post('/execute').set('Prefer', 'respond-async').send(body('endless')).expect(202);
    await request(svc.app).post(`/timeline/${cancelled.body.session_id}/cancel`).type('json').expect(202);
    expect((await streamOf(cancelled.body.session_id)).at(-1)).toBe('done');
  });

  it('gap, when the log was trimmed before the position asked for', async () => {
    const run = await request(svc.app).post('/execute').send(body('steps', { params: { count: 5 } })).expect(200);
    expect(await streamOf(run.body.session_id)).toEqual(['ready', 'gap', 'timelineEvent', 'timelineEvent', 'timelineEvent', 'done']);
  });

  it('keep-alive comments while idle, then expired', async () => {
    const seen = await streamOf(newSessionId());
    expect(seen[0]).toBe('ready');
    expect(seen).toContain('keepAlive');
    expect(seen.at(-1)).toBe('expired');
  });
});
