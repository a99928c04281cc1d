import request from 'supertest';
import { z } from 'zod';
import type { SessionHistory } from '../../client-sdk/src/types';
import { ModelError } from '../../server/models/model';
import type { Workflow } from '../../server/workflows/workflow';
import { expectJsonError, metricSample, postExecuteRaw } from '../helpers/api';
import { execute, newSessionId, startService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, openSse, timelineEvents, type SseReader, seqAtLeast, openReady } from '../helpers/sse-reader';

type Ev = { event_id: string; seq: number; type: string; details?: Record<string, unknown> };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET = 'secret internal detail';

/** A workflow that emits one step, then throws `error`. */
const failingWorkflow = (name: string, error: Error): Workflow => ({
  name,
  description: `Emits a step, then throws ${error.name}`,
  params: z.object({}),
  async run(_input, ctx) {
    await ctx.emit({ type: 'AGENT_START', status: 'IN_PROGRESS', message: 'Writer started', agent_name: 'writer' });
    throw error;
  },
});

/** Fails the way an overloaded provider does. */
const overloadedWorkflow = failingWorkflow(
  'overloaded',
  new ModelError('model_overloaded', 'The model provider is overloaded'),
);
/** Fails with a bug whose message must never reach a client. */
const buggyWorkflow = failingWorkflow('buggy', new Error(SECRET));

describe('POST /execute validation', () => {
  let svc: RunningService;
  let small: RunningService;
  beforeAll(async () => {
    svc = await startService({ maxEventsPerSession: 50, keepAliveMs: null });
    small = await startService({ bodyLimitBytes: 1024, keepAliveMs: null });
  });
  afterAll(async () => {
    await svc.close();
    await small.close();
  });
  /** `POST /execute` with `text` as the body, exactly as given. */
  const postRaw = (app: RunningService, text: string) => request(app.service.app).post('/execute').type('json').send(text);

  const valid = { project_id: 'p1', query: 'hello', workflow: 'synthetic', params: { events: 1 } };
  const without = (field: keyof typeof valid) => {
    const body: Record<string, unknown> = { ...valid };
    delete body[field];
    return body;
  };

  it('accepts the boundaries it rejects beyond (project_id 128, query 32768, events = MAX_EVENTS_PER_SESSION)', async () => {
    const response = await request(svc.service.app)
      .post('/execute')
      .send({
        ...valid,
        project_id: 'p'.repeat(128),
        query: 'q'.repeat(32768),
        context: [{ type: 'file', id: 'f1', extra: true }],
        params: { events: 50, interval_ms: 0, payload_bytes: 0 },
      })
      .expect(200);
    expect(response.body.status).toBe('completed');
  });

  it('answers 400 invalid_json for a body that is not JSON', async () => {
    for (const text of ['{"project_id":', 'not json', "{'a': 1}"]) {
      expectJsonError(await postRaw(svc, text), 400, 'invalid_json');
    }
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['missing project_id', without('project_id'), /project_id/],
    ['empty project_id', { ...valid, project_id: '' }, /project_id/],
    ['project_id of 129 chars', { ...valid, project_id: 'p'.repeat(129) }, /project_id/],
    ['project_id not a string', { ...valid, project_id: 7 }, /project_id/],
    ['missing query', without('query'), /query/],
    ['empty query', { ...valid, query: '' }, /query/],
    ['query of 32769 chars', { ...valid, query: 'q'.repeat(32769) }, /query/],
    ['context not an array', { ...valid, context: { type: 'file', id: 'f1' } }, /context/],
    ['context element without type', { ...valid, context: [{ id: 'f1' }] }, /context/],
    ['context element without id', { ...valid, context: [{ type: 'file' }] }, /context/],
    ['session_id not a UUID', { ...valid, session_id: 'not-a-uuid' }, /session_id/],
    ['session_id a UUID without dashes', { ...valid, session_id: newSessionId().replace(/-/g, '') }, /session_id/],
    ['unknown workflow', { ...valid, workflow: 'nope-workflow' }, /nope-workflow/],
    ['synthetic events 0', { ...valid, params: { events: 0 } }, /params\.events/],
    ['synthetic events over MAX_EVENTS_PER_SESSION', { ...valid, params: { events: 51 } }, /params\.events/],
    ['synthetic events not an integer', { ...valid, params: { events: 1.5 } }, /params\.events/],
    ['synthetic interval_ms 60001', { ...valid, params: { events: 1, interval_ms: 60001 } }, /params\.interval_ms/],
    ['synthetic interval_ms negative', { ...valid, params: { events: 1, interval_ms: -1 } }, /params\.interval_ms/],
    ['synthetic payload_bytes 65537', { ...valid, params: { events: 1, payload_bytes: 65537 } }, /params\.payload_bytes/],
    ['unknown synthetic param', { ...valid, params: { events: 1, evnets: 2 } }, /evnets/],
    ['unknown top-level field sessionId', { ...valid, sessionId: newSessionId() }, /sessionId/],
  ];

  it.each(invalid)('answers 400 invalid_request naming the field: %s', async (_name, body, field) => {
    const message = expectJsonError(await request(svc.service.app).post('/execute').send(body as object), 400, 'invalid_request');
    expect(message).toMatch(field);
  });

  it('knows no synthetic workflow unless ENABLE_SYNTHETIC=1: 400 invalid_request naming the workflow', async () => {
    const plain = await startService({ enableSynthetic: false, keepAliveMs: null });
    try {
      const message = expectJsonError(await postExecuteRaw(plain.url, JSON.stringify(valid)), 400, 'invalid_request');
      expect(message).toMatch(/workflow: unknown workflow "synthetic" \(registered: agents\)/);
    } finally {
      await plain.close();
    }
  });

  describe('nesting and size of context', () => {
    /** `levels` arrays, one inside the other, written as text: no recursion builds it. */
    const nestedText = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
    /** `levels` arrays, one inside the other, as a value. */
    const nested = (levels: number) => JSON.parse(nestedText(levels)) as unknown;

    it('answers 400 invalid_request, not 500, for a context nested 120,000 levels deep, and keeps serving', async () => {
      const body = `{"project_id":"p","query":"q","context":[{"type":"file","id":"f1","x":${nestedText(120_000)}}]}`;
      expect(Buffer.byteLength(body)).toBeLessThan(256 * 1024);
      for (const headers of [{}, { Prefer: 'respond-async' }] as Array<Record<string, string>>) {
        const message = expectJsonError(await postExecuteRaw(svc.url, body, headers), 400, 'invalid_request');
        expect(message).toBe('context: nested deeper than 32 levels');
      }
      const deepParams = `{"project_id":"p","query":"q","workflow":"synthetic","params":{"events":${nestedText(120_000)}}}`;
      expect(expectJsonError(await postExecuteRaw(svc.url, deepParams), 400, 'invalid_request')).toMatch(/^params: nested deeper/);
      expect((await execute(svc.url, valid)).status).toBe(200);
    });

    it('runs the agents workflow with a context at the depth limit, and refuses one level more', async () => {
      // The array is level 1, an item level 2: 30 more make 32.
      const atLimit = [{ type: 'file', id: 'f1', x: nested(30) }];
      const agents = { project_id: 'p', query: 'Compare two queues' };
      const response = await execute(svc.url, { ...agents, context: atLimit });
      expect({ status: response.status, outcome: response.body.status }).toEqual({ status: 200, outcome: 'completed' });
      const over = [{ type: 'file', id: 'f1', x: nested(31) }];
      expectJsonError(await postExecuteRaw(svc.url, JSON.stringify({ ...agents, context: over })), 400, 'invalid_request');
    });

    it('answers 400 invalid_request for a context over 64 KiB of JSON, and accepts one just under', async () => {
      const item = (text: string) => ({ type: 'file', id: 'f1', text });
      const overhead = JSON.stringify([item('')]).length;
      const under = await execute(svc.url, { ...valid, context: [item('x'.repeat(64 * 1024 - overhead))] });
      expect(under.status).toBe(200);
      const over = JSON.stringify({ ...valid, context: [item('x'.repeat(64 * 1024 - overhead + 1))] });
      expect(expectJsonError(await postExecuteRaw(svc.url, over), 400, 'invalid_request')).toBe('context: larger than 65536 bytes of JSON');
    });
  });

  it('answers 400 (not 500) for a compressed body that does not inflate', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const response = await request(svc.service.app).post('/execute').set('Content-Encoding', encoding).send(valid);
      expectJsonError(response, 400, 'invalid_request');
    }
  });

  it('answers 400 invalid_request for a body that is a JSON array, string, number or null', async () => {
    for (const text of ['[{"project_id":"p1","query":"q"}]', '"hello"', '42', 'null']) {
      expectJsonError(await postRaw(svc, text), 400, 'invalid_request');
    }
  });

  it('does not claim the session of a rejected request', async () => {
    const sessionId = newSessionId();
    const rejected = await request(svc.service.app).post('/execute').send({ ...valid, session_id: sessionId, query: '' });
    expectJsonError(rejected, 400, 'invalid_request');
    expectJsonError(await request(svc.service.app).get(`/timeline/${sessionId}`), 404, 'session_not_found');
    await request(svc.service.app).post('/execute').send({ ...valid, session_id: sessionId }).expect(200);
  });

  it('answers 413 payload_too_large for a body over the limit, and accepts one under it', async () => {
    const over = await request(small.service.app).post('/execute').send({ ...valid, query: 'q'.repeat(2000) });
    expectJsonError(over, 413, 'payload_too_large');
    await request(small.service.app).post('/execute').send({ ...valid, query: 'q'.repeat(500) }).expect(200);
  });

  it('answers 409 session_conflict while the session runs and after it finished (ids compared in lower case)', async () => {
    const sessionId = newSessionId();
    const app = svc.service.app;
    await request(app).post('/execute').set('Prefer', 'respond-async').send(synthetic(sessionId, { events: 3, interval_ms: 300 })).expect(202);

    const whileRunning = await request(app).post('/execute').send(synthetic(sessionId, { events: 1 }));
    expect(expectJsonError(whileRunning, 409, 'session_conflict')).toContain(sessionId);
    expect(whileRunning.body.session_id).toBe(sessionId);
    expect((await request(app).get(`/timeline/${sessionId}`)).body.status).toBe('running');

    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await reader.waitFor(isNamed('done'));
    const afterFinished = await request(app).post('/execute').send(synthetic(sessionId.toUpperCase(), { events: 1 }));
    expectJsonError(afterFinished, 409, 'session_conflict');
    expect(afterFinished.body.session_id).toBe(sessionId);

    // The conflicting requests did not touch the session's log.
    const history: SessionHistory = (await request(app).get(`/timeline/${sessionId}`)).body;
    expect(history.events).toHaveLength(5);
    expect(history.done?.status).toBe('completed');
  });

  it('lets exactly one of two concurrent POSTs with the same session id start the run', async () => {
    const modes: Array<[Record<string, string>, number]> = [
      [{}, 200],
      [{ Prefer: 'respond-async' }, 202],
    ];
    for (const [headers, started] of modes) {
      const sessionId = newSessionId();
      const body = synthetic(sessionId, { events: 3, interval_ms: 20 });
      const post = () => request(svc.service.app).post('/execute').set(headers).send(body);
      const responses = await Promise.all([post(), post()]);
      expect(responses.map((r) => r.status).sort()).toEqual([started, 409]);
      expectJsonError(responses.find((r) => r.status === 409)!, 409, 'session_conflict');
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('done'));
      await reader.ended;
      expect(timelineEvents<Ev>(reader).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    }
  });
});

describe('POST /execute runs', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null }, { workflows: [overloadedWorkflow, buggyWorkflow] });
  });
  afterAll(() => svc.close());

  const app = () => svc.service.app;
  const historyOf = async (sessionId: string): Promise<SessionHistory> => (await request(app()).get(`/timeline/${sessionId}`).expect(200)).body;
  const streamOf = (sessionId: string) => openReady(`${svc.url}/timeline/stream/${sessionId}`);

  /** `done` was signalled exactly once: one `done` on the stream, and the bus refuses another. */
  const expectDoneOnce = async (sessionId: string, reader: SseReader, status: string) => {
    await reader.ended;
    const doneFrames = reader.frames.filter(isNamed('done'));
    expect(doneFrames).toHaveLength(1);
    expect(reader.frames.at(-1)).toBe(doneFrames[0]);
    const history = await historyOf(sessionId);
    expect(history.status).toBe(status);
    expect(history.done).toMatchObject({ id: doneFrames[0].id, status });
    expect(await svc.service.bus.signalDone(sessionId, { status: 'completed' })).toBeNull();
    expect(await historyOf(sessionId)).toEqual(history);
    return history;
  };

  it('sync: answers 200 with the summary; event_count is the number of events in the history', async () => {
    const sessionId = newSessionId();
    const reader = await streamOf(sessionId);
    const response = await request(app()).post('/execute').send(synthetic(sessionId, { events: 7 })).expect(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.body).toEqual({
      session_id: sessionId,
      status: 'completed',
      result: { events: 7 },
      event_count: 9,
      duration_ms: expect.any(Number),
    });
    expect(response.body.duration_ms).toBeGreaterThanOrEqual(0);
    const history = await expectDoneOnce(sessionId, reader, 'completed');
    expect(history.events).toHaveLength(response.body.event_count);
    expect(history.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(history.done).toEqual({ id: expect.any(String), status: 'completed', result: { events: 7 } });
  });

  it('sync: the default agents workflow answers 200 and its event_count matches the history', async () => {
    const sessionId = newSessionId();
    const response = await request(app())
      .post('/execute')
      .send({ project_id: 'p1', query: 'Write a haiku about streams', session_id: sessionId })
      .expect(200);
    expect(response.body.status).toBe('completed');
    const history = await historyOf(sessionId);
    expect(history.events).toHaveLength(response.body.event_count);
    expect(history.events.at(-1)?.type).toBe('WORKFLOW_COMPLETE');
    expect(history.done?.status).toBe('completed');
  });

  it('async: answers 202 with the stream url at once, while the run goes on to complete', async () => {
    const sessionId = newSessionId();
    const response = await request(app())
      .post('/execute')
      .set('Prefer', 'respond-async')
      .send(synthetic(sessionId, { events: 3, interval_ms: 300 }))
      .expect(202);
    expect(response.body).toEqual({ session_id: sessionId, stream_url: `/timeline/stream/${sessionId}` });

    const during = await historyOf(sessionId);
    expect(during.status).toBe('running');
    expect(during.done).toBeNull();

    const reader = await openSse(`${svc.url}${response.body.stream_url}`);
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 3 } });
    const history = await expectDoneOnce(sessionId, reader, 'completed');
    expect(history.events.map((e) => e.type)).toEqual([
      'WORKFLOW_START',
      'AGENT_MESSAGE',
      'AGENT_MESSAGE',
      'AGENT_MESSAGE',
      'WORKFLOW_COMPLETE',
    ]);
  });

  it('without session_id, the server makes a UUID and the events are recorded (sync and async)', async () => {
    const sync = await request(app()).post('/execute').send(synthetic(undefined, { events: 2 })).expect(200);
    expect(sync.body.session_id).toMatch(UUID);
    const history = await historyOf(sync.body.session_id);
    expect(history.events).toHaveLength(sync.body.event_count);
    expect(history.events.every((e) => e.session_id === sync.body.session_id)).toBe(true);
    expect(history.done?.status).toBe('completed');

    const async = await request(app()).post('/execute').set('Prefer', 'respond-async').send(synthetic(undefined, { events: 2 })).expect(202);
    expect(async.body.session_id).toMatch(UUID);
    expect(async.body.session_id).not.toBe(sync.body.session_id);
    expect(async.body.stream_url).toBe(`/timeline/stream/${async.body.session_id}`);
    const reader = await openSse(`${svc.url}${async.body.stream_url}`);
    await reader.waitFor(isNamed('done'));
    expect(timelineEvents<Ev>(reader).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('a provider error answers 502 workflow_failed; done is failed with the provider code; events end with WORKFLOW_ERROR', async () => {
    const sessionId = newSessionId();
    const reader = await streamOf(sessionId);
    const response = await request(app()).post('/execute').send({ project_id: 'p1', query: 'q', session_id: sessionId, workflow: 'overloaded' });
    expect(expectJsonError(response, 502, 'workflow_failed')).toBe('The model provider is overloaded');
    expect(response.body.session_id).toBe(sessionId);

    const history = await expectDoneOnce(sessionId, reader, 'failed');
    expect(history.done).toEqual({
      id: expect.any(String),
      status: 'failed',
      error: { code: 'model_overloaded', message: 'The model provider is overloaded' },
    });
    expect(history.events.map((e) => e.type)).toEqual(['WORKFLOW_START', 'AGENT_START', 'WORKFLOW_ERROR']);
    expect(history.events.at(-1)?.status).toBe('ERROR');
    expect(timelineEvents<Ev>(reader).map((e) => e.type)).toEqual(['WORKFLOW_START', 'AGENT_START', 'WORKFLOW_ERROR']);
  });

  it('an unexpected error answers 500 internal_error and its message leaks nowhere', async () => {
    const sessionId = newSessionId();
    const reader = await streamOf(sessionId);
    const response = await request(app()).post('/execute').send({ project_id: 'p1', query: 'q', session_id: sessionId, workflow: 'buggy' });
    expectJsonError(response, 500, 'internal_error');
    expect(response.body.session_id).toBe(sessionId);
    expect(response.text).not.toContain(SECRET);

    const history = await expectDoneOnce(sessionId, reader, 'failed');
    expect(history.done?.error?.code).toBe('internal_error');
    expect(history.events.at(-1)?.type).toBe('WORKFLOW_ERROR');
    expect(JSON.stringify(history)).not.toContain(SECRET);
    expect(reader.raw).not.toContain(SECRET);
  });

  it('cancel: a long run cancelled mid-way answers 200 cancelled; events end with WORKFLOW_CANCELLED', async () => {
    const sessionId = newSessionId();
    const reader = await streamOf(sessionId);
    // `then` sends the request now; the test awaits its answer later.
    const pending = request(app()).post('/execute').send(synthetic(sessionId, { events: 1000, interval_ms: 20 })).then((response) => response);
    await reader.waitFor((f) => f.event === undefined && JSON.parse(f.data).type === 'AGENT_MESSAGE');

    await request(app()).post(`/timeline/${sessionId}/cancel`).type('json').expect(202);
    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ session_id: sessionId, status: 'cancelled' });

    const history = await expectDoneOnce(sessionId, reader, 'cancelled');
    expect(history.done).toEqual({ id: expect.any(String), status: 'cancelled' });
    expect(history.events.at(-1)?.type).toBe('WORKFLOW_CANCELLED');
    expect(history.events.length).toBeLessThan(1002);
    expect(history.events).toHaveLength(response.body.event_count);
    expect(timelineEvents<Ev>(reader).at(-1)?.type).toBe('WORKFLOW_CANCELLED');
  });

  it('counts one finished run per run, whatever the outcome', async () => {
    const before = (await request(app()).get('/metrics').expect(200)).text;
    const body = (workflow: string) => ({ project_id: 'p1', query: 'q', workflow });
    await request(app()).post('/execute').send(body('overloaded')).expect(502);
    await request(app()).post('/execute').send(body('synthetic')).expect(200);
    const after = (await request(app()).get('/metrics').expect(200)).text;
    const delta = (outcome: string) =>
      metricSample(after, `timeline_runs_total{outcome="${outcome}"}`) -
      metricSample(before, `timeline_runs_total{outcome="${outcome}"}`);
    expect({ completed: delta('completed'), failed: delta('failed'), cancelled: delta('cancelled') }).toEqual({
      completed: 1,
      failed: 1,
      cancelled: 0,
    });
  });

  it('a POST client that disconnects mid-run does not stop the run', async () => {
    const sessionId = newSessionId();
    const reader = await streamOf(sessionId);
    const controller = new AbortController();
    const post = fetch(`${svc.url}/execute`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(synthetic(sessionId, { events: 10, interval_ms: 40 })),
      signal: controller.signal,
    });
    await reader.waitFor(seqAtLeast(3));
    controller.abort();
    await expect(post).rejects.toThrow();

    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 10 } });
    expect(timelineEvents<Ev>(reader).map((e) => e.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const history: SessionHistory = await expectDoneOnce(sessionId, reader, 'completed');
    expect(history.events).toHaveLength(12);
  });
});
