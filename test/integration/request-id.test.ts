import { z } from 'zod';
import type { Workflow } from '../../server/workflows/workflow';
import { expectJsonError, postExecuteRaw, request } from '../helpers/api';
import { capturedLog, type CapturedLog, type LogRecord } from '../helpers/log-capture';
import { execute, newSessionId, startService, synthetic, type RunningService } from '../helpers/service';
import { openReady } from '../helpers/sse-reader';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A workflow that logs through its context, then fails with a bug (an unhandled error). */
const loggingWorkflow: Workflow = {
  name: 'logging',
  description: 'Logs a line through ctx.log, then throws',
  params: z.object({}),
  async run(_input, ctx) {
    ctx.log.info('workflow step');
    throw new Error('boom');
  },
};

let logs: CapturedLog;
let svc: RunningService;
let authed: RunningService;
let authedLogs: CapturedLog;

beforeAll(async () => {
  logs = capturedLog();
  svc = await startService({ keepAliveMs: null, corsOrigins: ['https://app.example'] }, { log: logs.log, workflows: [loggingWorkflow] });
  authedLogs = capturedLog();
  authed = await startService({ keepAliveMs: null, apiKey: 'sekrit-key-for-request-ids' }, { log: authedLogs.log });
});

afterAll(async () => {
  await svc.close();
  await authed.close();
});

const withId = (id: string) => (record: LogRecord) => record.request_id === id;
const accessLine = (id: string) => (record: LogRecord) => record.request_id === id && record.msg === 'request';

describe('X-Request-Id', () => {
  it("echoes the caller's id and puts it on the request's log line and every line of the run it started", async () => {
    const id = 'req-0123:abc/DEF+=@~._';
    const sessionId = newSessionId();
    const response = await execute(svc.url, synthetic(sessionId, { events: 3 }), { 'X-Request-Id': id });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe(id);

    const access = await logs.waitFor(accessLine(id));
    expect(access).toMatchObject({ method: 'POST', path: '/execute', status: 200, session_id: sessionId, level: 30 });
    expect(typeof access.duration_ms).toBe('number');
    const finished = await logs.waitFor((r) => r.msg === 'run finished' && r.session_id === sessionId);
    expect(finished).toMatchObject({ request_id: id, workflow: 'synthetic', status: 'completed' });
    // Every line about this session carries the id of the request that started it.
    const ofSession = logs.records().filter((r) => r.session_id === sessionId);
    expect(ofSession.length).toBeGreaterThanOrEqual(2);
    for (const record of ofSession) expect({ msg: record.msg, request_id: record.request_id }).toEqual({ msg: record.msg, request_id: id });
  });

  it('makes one when the caller sends none, or one that is too long or has unsafe characters', async () => {
    for (const header of [undefined, '', 'x'.repeat(129), 'has space', 'new\u00e9', 'a"b', '<script>', 'a,b']) {
      const response = await request(`${svc.url}/healthz`, { headers: header === undefined ? {} : { 'X-Request-Id': header } });
      expect({ header, status: response.status }).toEqual({ header, status: 200 });
      expect({ header, id: response.headers.get('x-request-id') }).toEqual({ header, id: expect.stringMatching(UUID) });
    }
    const longest = 'x'.repeat(128);
    expect((await request(`${svc.url}/healthz`, { headers: { 'X-Request-Id': longest } })).headers.get('x-request-id')).toBe(longest);
  });

  it('gives two requests without one two different ids', async () => {
    const [a, b] = await Promise.all([request(`${svc.url}/healthz`), request(`${svc.url}/healthz`)]);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
  });

  it('is on error responses too, and on the lines of a run that failed with a bug', async () => {
    const bad = await postExecuteRaw(svc.url, '{"project_id":', { 'X-Request-Id': 'req-bad-json' });
    expectJsonError(bad, 400, 'invalid_json');
    expect(bad.headers.get('x-request-id')).toBe('req-bad-json');
    expect(await logs.waitFor(accessLine('req-bad-json'))).toMatchObject({ status: 400, path: '/execute' });

    const missing = await request(`${svc.url}/nowhere`, { headers: { 'X-Request-Id': 'req-404' } });
    expectJsonError(missing, 404, 'not_found');
    expect(missing.headers.get('x-request-id')).toBe('req-404');

    // A run that fails with a bug: its warning carries the request's id (and no stack reaches the client).
    const failed = await execute(svc.url, { project_id: 'p1', query: 'q', workflow: 'logging' }, { 'X-Request-Id': 'req-bug' });
    expect(failed.status).toBe(500);
    expect(failed.headers.get('x-request-id')).toBe('req-bug');
    expect(await logs.waitFor((r) => r.msg === 'workflow step')).toMatchObject({ request_id: 'req-bug' });
    expect(await logs.waitFor((r) => r.msg === 'run failed')).toMatchObject({ request_id: 'req-bug', level: 40 });
  });

  it('is on a 401 and on the debug line that says why', async () => {
    const response = await request(`${authed.url}/timeline/${newSessionId()}`, { headers: { 'X-Request-Id': 'req-unauthorized' } });
    expectJsonError(response, 401, 'unauthorized');
    expect(response.headers.get('x-request-id')).toBe('req-unauthorized');
    expect(await authedLogs.waitFor((r) => r.msg === 'unauthorized request')).toMatchObject({ request_id: 'req-unauthorized' });
    expect(await authedLogs.waitFor(accessLine('req-unauthorized'))).toMatchObject({ status: 401 });
  });

  it('is on a stream response, whose line is logged when the stream closes', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`, { headers: { 'X-Request-Id': 'req-stream' } });
    expect(reader.headers['x-request-id']).toBe('req-stream');
    expect(logs.records().some(withId('req-stream'))).toBe(false);
    reader.destroy();
    expect(await logs.waitFor(accessLine('req-stream'))).toMatchObject({ method: 'GET', path: `/timeline/stream/${sessionId}`, status: 200, completed: false });
  });

  it('logs probes and scrapes at debug, API requests at info', async () => {
    await request(`${svc.url}/metrics`, { headers: { 'X-Request-Id': 'req-scrape' } });
    expect(await logs.waitFor(accessLine('req-scrape'))).toMatchObject({ level: 20, path: '/metrics' });
    await request(`${svc.url}/timeline/${newSessionId()}`, { headers: { 'X-Request-Id': 'req-history' } });
    expect(await logs.waitFor(accessLine('req-history'))).toMatchObject({ level: 30, status: 404 });
  });

  it('may be sent and read by a page on an allowed origin (CORS)', async () => {
    const preflight = await request(`${svc.url}/execute`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, x-request-id, traceparent' },
    });
    expect(preflight.status).toBe(204);
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(['x-request-id', 'traceparent', 'tracestate']));
    const response = await request(`${svc.url}/healthz`, { headers: { Origin: 'https://app.example' } });
    expect((response.headers.get('access-control-expose-headers') ?? '').toLowerCase()).toContain('x-request-id');
  });
});
