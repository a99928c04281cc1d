import http from 'node:http';
import { EventSource, type ErrorEvent } from 'eventsource';
import jwt from 'jsonwebtoken';
import type { DonePayload, ErrorBody, ExecuteResult, TimelineEvent } from '../../client-sdk/src/types';
import { executeAsync, parseRawResponse, postExecuteRaw, sendRaw } from '../helpers/api';
import { startRedisServer } from '../helpers/redis-server';
import { execute, newSessionId, synthetic } from '../helpers/service';
import { isNamed, timelineEvents, type SseFrame, type SseReader, openReady, streamFollower } from '../helpers/sse-reader';
import { within } from '../helpers/wait';
import { freePort, spawnService, startProcess, stopAllProcesses, type ListeningProcess, type LogLine } from '../helpers/process';

/**
 * The compiled service as a user runs it (`npm start` = `node dist/server/main.js`, built by
 * jest's globalSetup), one child process per test, on real sockets.
 */

const streams = streamFollower();
const eventSources: EventSource[] = [];

afterEach(async () => {
  for (const source of eventSources.splice(0)) source.close();
  streams.closeAll();
  await stopAllProcesses();
});

interface Answer<T> {
  status: number;
  body: T;
  /** The frames the stream reader had received when the response head arrived. */
  framesBefore: SseFrame[];
  at: number;
}

/**
 * POST /execute; snapshots `reader`'s frames and the time the moment the response head arrives
 * (`execute` would only return after the body), so orderings against it stay exact.
 */
async function post<T>(url: string, body: unknown, reader?: SseReader): Promise<Answer<T>> {
  const response = await fetch(`${url}/execute`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const at = Date.now();
  const framesBefore = [...(reader?.frames ?? [])];
  return { status: response.status, body: (await response.json()) as T, framesBefore, at };
}

/** Resolves with the time `promise` settled, so orderings can be asserted afterwards. */
const settledAt = <T>(promise: Promise<T>): Promise<number> =>
  promise.then(
    () => Date.now(),
    () => Date.now(),
  );

const eventType = (frame: SseFrame): string | undefined =>
  frame.event === undefined ? (JSON.parse(frame.data) as TimelineEvent).type : undefined;


describe('npm start with defaults (in-memory bus, scripted model)', () => {
  it('is healthy and streams an agents run live: tokens arrive before the POST answers, then done', async () => {
    const proc = await startProcess();
    const listening = proc.logs().find((l) => l.msg === 'timeline service listening');
    expect(listening).toMatchObject({ bus: 'memory', model: 'scripted' });

    const health = await fetch(`${proc.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const sessionId = newSessionId();
    const reader = await streams.follow(proc.url, sessionId);
    const firstToken = reader.waitFor((frame) => eventType(frame) === 'AGENT_TOKEN', 10000, 'AGENT_TOKEN').then(() => [
      ...reader.frames,
    ]);
    // No `workflow` and no `Prefer`: the default `agents` workflow, answered synchronously.
    const answer = await post<ExecuteResult>(
      proc.url,
      { project_id: 'e2e', query: 'What is server-sent events?', session_id: sessionId },
      reader,
    );

    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ session_id: sessionId, status: 'completed' });
    expect(answer.framesBefore.some((frame) => eventType(frame) === 'AGENT_TOKEN')).toBe(true);
    // Incremental, not flushed at the end: when the first token arrived, the run was not over.
    const framesAtFirstToken = await firstToken;
    expect(framesAtFirstToken.some((frame) => eventType(frame) === 'WORKFLOW_COMPLETE' || frame.event === 'done')).toBe(false);

    const done = await reader.waitFor(isNamed('done'));
    await reader.ended;
    expect((JSON.parse(done.data) as DonePayload).status).toBe('completed');
    expect(reader.frames.at(-1)).toBe(done);
    const events = timelineEvents<TimelineEvent>(reader);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
    expect(events[0].type).toBe('WORKFLOW_START');
    expect(events.at(-1)?.type).toBe('WORKFLOW_COMPLETE');
    expect(answer.body.event_count).toBe(events.length);
  });

  it('serves a standard EventSource client: messages with lastEventId, ready and done, then 204 stops it', async () => {
    // RETRY_MS short so the EventSource's reconnect after `done` (answered 204) happens quickly.
    const proc = await startProcess({ RETRY_MS: '100' });
    const sessionId = newSessionId();
    // The client's own requests, seen through its `fetch` option: the reconnect after `done`.
    const connections: Array<{ lastEventId: string | null; status: number }> = [];
    const source = new EventSource(`${proc.url}/timeline/stream/${sessionId}`, {
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        connections.push({ lastEventId: new Headers(init?.headers).get('last-event-id'), status: response.status });
        return response;
      },
    });
    eventSources.push(source);

    const messages: MessageEvent[] = [];
    const named: Array<{ type: string; data: string; lastEventId: string }> = [];
    const ready = new Promise<void>((resolve) =>
      source.addEventListener('ready', (event) => {
        named.push({ type: 'ready', data: event.data, lastEventId: event.lastEventId });
        resolve();
      }),
    );
    source.addEventListener('message', (event) => messages.push(event));
    source.addEventListener('done', (event) => named.push({ type: 'done', data: event.data, lastEventId: event.lastEventId }));
    // The server ends the response after `done`; the EventSource reconnects with that id, gets
    // 204 and stops for good (readyState CLOSED) instead of retrying forever.
    const closed = new Promise<ErrorEvent>((resolve) =>
      source.addEventListener('error', (event) => {
        if (source.readyState === EventSource.CLOSED) resolve(event);
      }),
    );

    await ready;
    const answer = await execute(proc.url, synthetic(sessionId, { events: 5, interval_ms: 20 }));
    expect(answer.status).toBe(200);
    const closedBy = await within(closed, 10000, 'the EventSource to close after done');

    expect(named.map((n) => n.type)).toEqual(['ready', 'done']);
    expect(JSON.parse(named[0].data)).toEqual({ session_id: sessionId, status: 'waiting' });
    const events = messages.map((m) => JSON.parse(m.data as string) as TimelineEvent);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(events.map((e) => e.type)).toEqual([
      'WORKFLOW_START',
      ...Array<string>(5).fill('AGENT_MESSAGE'),
      'WORKFLOW_COMPLETE',
    ]);
    messages.forEach((message, i) => expect(message.lastEventId).toBe(events[i].event_id));
    const done = named[1];
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 5 } });
    expect(done.lastEventId).toMatch(/^\d+-\d+$/);
    expect(done.lastEventId).not.toBe(events.at(-1)?.event_id);
    expect(answer.body.event_count).toBe(7);
    expect(connections).toEqual([
      { lastEventId: null, status: 200 },
      { lastEventId: done.lastEventId, status: 204 },
    ]);
    expect(closedBy.code).toBe(204);
  });
});

describe('graceful shutdown', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s ends an idle open stream at once and exits 0, well within SHUTDOWN_GRACE_MS', async (signal) => {
    const proc = await startProcess({ SHUTDOWN_GRACE_MS: '20000' });
    const reader = await streams.follow(proc.url, newSessionId());

    const sentAt = Date.now();
    const streamEndedAt = settledAt(reader.ended);
    const exit = await within(proc.stop(signal), 10000, 'the process to exit');
    const exitedAt = Date.now();

    expect(exit).toEqual({ code: 0, signal: null });
    expect((await streamEndedAt) - sentAt).toBeLessThan(1000);
    expect(exitedAt - sentAt).toBeLessThan(3000);
    // Ended, not finished: no `done` (the session never ran), so a client reconnects elsewhere.
    expect(reader.frames.map((f) => f.event)).toEqual(['ready']);
    expect(proc.logs().some((l) => l.msg === 'shutting down' && l.signal === signal)).toBe(true);
  });

  it('ends a run that outlives the grace period as failed "shutdown", then exits 0', async () => {
    const graceMs = 300;
    const proc = await startProcess({ SHUTDOWN_GRACE_MS: String(graceMs) });
    const syncId = newSessionId();
    const asyncId = newSessionId();
    const reader = await streams.follow(proc.url, syncId);
    const asyncReader = await streams.follow(proc.url, asyncId);

    // Two runs that would take a minute: one held by a synchronous POST, one started async.
    const long = { events: 2, interval_ms: 60000 };
    const held = post<ErrorBody>(proc.url, synthetic(syncId, long));
    const accepted = await executeAsync(proc.url, synthetic(asyncId, long));
    expect(accepted.status).toBe(202);
    // Both runs are under way (their first AGENT_MESSAGE was published) before the signal.
    await reader.waitFor((frame) => eventType(frame) === 'AGENT_MESSAGE');
    await asyncReader.waitFor((frame) => eventType(frame) === 'AGENT_MESSAGE');

    const sentAt = Date.now();
    const streamEndedAt = settledAt(Promise.all([reader.ended, asyncReader.ended]));
    proc.child.kill('SIGTERM');
    const answer = await within(held, 5000, 'the held POST to answer');
    const exit = await within(proc.exited, 10000, 'the process to exit');
    const exitedAt = Date.now();

    expect(exit).toEqual({ code: 0, signal: null });
    // The held POST learnt how its run ended, before the process went away.
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ error: { code: 'shutdown' }, session_id: syncId });
    expect(answer.at).toBeLessThanOrEqual(exitedAt);
    // The runs were given the grace period (not cut at once), and not their full minute.
    expect(answer.at - sentAt).toBeGreaterThanOrEqual(graceMs - 20);
    expect(exitedAt - sentAt).toBeLessThan(graceMs + 3000);
    // The open streams were ended at once, not after the runs (their clients reconnect elsewhere).
    expect(await streamEndedAt).toBeLessThan(answer.at);
    expect(reader.frames.some(isNamed('done'))).toBe(false);
    expect(asyncReader.frames.some(isNamed('done'))).toBe(false);
    // The async run, which nobody was holding, was signalled done as failed too.
    const finished = (sessionId: string) =>
      proc.logs().find((l: LogLine) => l.msg === 'run finished' && l.session_id === sessionId);
    expect(finished(asyncId)).toMatchObject({ status: 'failed' });
    expect(finished(syncId)).toMatchObject({ status: 'failed' });
    const failures = proc.logs().filter((l) => l.msg === 'run aborted').map((l) => [l.session_id, l.code]);
    expect(failures).toEqual(expect.arrayContaining([[asyncId, 'shutdown'], [syncId, 'shutdown']]));
  });

  it('lets a run that fits in the grace period complete, answers it, then exits 0', async () => {
    const proc = await startProcess({ SHUTDOWN_GRACE_MS: '10000' });
    const sessionId = newSessionId();
    const reader = await streams.follow(proc.url, sessionId);
    const held = post<ExecuteResult>(proc.url, synthetic(sessionId, { events: 3, interval_ms: 300 }));
    await reader.waitFor((frame) => eventType(frame) === 'AGENT_MESSAGE');

    const sentAt = Date.now();
    proc.child.kill('SIGTERM');
    const answer = await within(held, 5000, 'the held POST to answer');
    const exit = await within(proc.exited, 10000, 'the process to exit');
    const exitedAt = Date.now();

    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ session_id: sessionId, status: 'completed', result: { events: 3 }, event_count: 5 });
    expect(exit).toEqual({ code: 0, signal: null });
    expect(answer.at).toBeLessThanOrEqual(exitedAt);
    // Exits once the run is done, not after the whole grace period.
    expect(exitedAt - sentAt).toBeLessThan(5000);
  });
});

describe('NODE_ENV=production', () => {
  it('logs a loud warning at start when auth is off, and none once API_KEY is set', async () => {
    const open = await startProcess({ NODE_ENV: 'production' });
    const warning = open.logs().find((l) => l.warning === 'auth_off');
    expect(warning).toMatchObject({ level: 50, msg: expect.stringMatching(/^AUTHENTICATION IS OFF/) });
    // Before the listening line: the first thing an operator reads.
    expect(open.logs().indexOf(warning!)).toBeLessThan(open.logs().findIndex((l) => l.msg === 'timeline service listening'));

    const metricsPort = String(await freePort());
    const secured = await startProcess({ NODE_ENV: 'production', API_KEY: 'k-0123456789', METRICS_PORT: metricsPort, ENABLE_SYNTHETIC: '0' });
    expect(secured.logs().filter((l) => l.warning !== undefined)).toEqual([]);
    const development = await startProcess({});
    expect(development.logs().filter((l) => l.warning !== undefined)).toEqual([]);
  });
});

describe('REDIS_URL: the memory check at start', () => {
  it('warns when Redis may evict keys, and reports a safe Redis at info level', async () => {
    const unsafe = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] });
    const safe = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction'] });
    try {
      const warned = await startProcess({ REDIS_URL: unsafe.url });
      const line = await warned.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('Redis memory settings are unsafe'));
      expect(line).toMatchObject({ level: 40, maxmemory_policy: 'allkeys-lru', problems: [expect.stringContaining('use noeviction')] });
      // A warning, not a refusal: the instance serves.
      expect((await fetch(`${warned.url}/readyz`)).status).toBe(200);

      const checked = await startProcess({ REDIS_URL: safe.url });
      expect(await checked.waitForLog((l) => l.msg === 'Redis memory settings checked')).toMatchObject({ level: 30, problems: [] });
    } finally {
      await stopAllProcesses();
      await Promise.all([unsafe.stop(), safe.stop()]);
    }
  });
});

describe('METRICS_PORT', () => {
  it('serves /metrics on its own port only, named in the listening line', async () => {
    const metricsPort = await freePort();
    const proc = await startProcess({ METRICS_PORT: String(metricsPort) });
    const listening = proc.logs().find((l) => l.msg === 'timeline service listening');
    expect(listening).toMatchObject({ port: proc.port, metrics_port: metricsPort });
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('timeline_runs_total');
    const onApi = await fetch(`${proc.url}/metrics`);
    expect(onApi.status).toBe(404);
    expect(((await onApi.json()) as ErrorBody).error.code).toBe('not_found');
    const exit = await within(proc.stop('SIGTERM'), 10000, 'the process to exit');
    expect(exit.code).toBe(0);
  });
});

describe('bad configuration', () => {
  it.each([
    ['KEEPALIVE_MS', 'abc'],
    ['BODY_LIMIT', 'lots'],
    ['PORT', '70000'],
    ['LOG_LEVEL', 'loud'],
    ['METRICS_PORT', '99999'],
    ['ENABLE_SYNTHETIC', 'maybe'],
  ])('%s=%s stops the start with a non-zero exit and a message naming the variable', async (name, value) => {
    // A free PORT too, so a config check that let the value through could not fail on EADDRINUSE.
    const env = { PORT: String(await freePort()), [name]: value };
    const startedAt = Date.now();
    const proc = spawnService(env);
    const exit = await within(proc.exited, 5000, 'the process to exit');

    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(proc.stderr).toContain(name);
    expect(proc.stderr).toContain(value);
    expect(proc.logs().some((l) => l.msg === 'timeline service listening')).toBe(false);
  });
});

describe('log output', () => {
  /** Raw GET, so malformed paths reach the server byte for byte. */
  const get = (url: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      http
        .get(url, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, text }));
        })
        .once('error', reject);
    });

  it('never writes ?access_token= values to stdout, even at LOG_LEVEL=trace', async () => {
    // With JWT_SECRET set, ?access_token= is how a browser EventSource authenticates a stream.
    const apiKey = `sekrit-key-${process.pid}`;
    const secret = `sekrit-secret-${process.pid}`;
    const proc = await startProcess({ LOG_LEVEL: 'trace', API_KEY: apiKey, JWT_SECRET: secret });
    const token = jwt.sign({ sub: 'alice' }, secret, { algorithm: 'HS256', expiresIn: 300 });
    const wrong = (n: number) => `sekrit-wrong-${n}-${process.pid}`;
    const sessionId = newSessionId();
    const isClientError = (status: number) => status >= 400 && status < 500;

    expect(isClientError((await get(`${proc.url}/timeline/stream/not-a-uuid?access_token=${wrong(1)}`)).status)).toBe(true);
    expect(isClientError((await get(`${proc.url}/timeline/stream/${sessionId}?access_token=${token}&lastEventId=x`)).status)).toBe(true);
    expect(isClientError((await get(`${proc.url}/no/such/route?access_token=${wrong(2)}`)).status)).toBe(true);
    // The shared key is refused in a URL, and not logged either.
    expect((await get(`${proc.url}/timeline/stream/${sessionId}?access_token=${apiKey}`)).status).toBe(401);
    // A stream that opens, runs and closes (debug logs on close), and one the client cuts.
    const reader = await openReady(`${proc.url}/timeline/stream/${sessionId}?access_token=${token}`);
    const answer = await execute(proc.url, synthetic(sessionId, { events: 2 }), { Authorization: `Bearer ${token}` });
    expect(answer.status).toBe(200);
    await reader.ended;
    const cut = await openReady(`${proc.url}/timeline/stream/${newSessionId()}?access_token=${token}`);
    cut.destroy();
    const exit = await within(proc.stop('SIGTERM'), 10000, 'the process to exit');

    expect(exit.code).toBe(0);
    // The service did log about these sessions, so the check below is not vacuous.
    expect(proc.logs().some((l) => l.msg === 'run finished' && l.session_id === sessionId)).toBe(true);
    expect(proc.stdout).not.toContain('sekrit-');
    expect(proc.stderr).not.toContain('sekrit-');
    expect(proc.stdout).not.toContain(token);
  });

  /** Requests a client gets wrong; each must be a 4xx JSON error and must not log a stack. */
  const malformed = (proc: ListeningProcess): Array<[string, () => Promise<{ status: number; text: string }>]> => [
    ['non-UUID session id', () => get(`${proc.url}/timeline/stream/nope`)],
    ['malformed Last-Event-ID', () => get(`${proc.url}/timeline/stream/${newSessionId()}?lastEventId=zzz`)],
    ['bad percent-encoding in a stream path', () => get(`${proc.url}/timeline/stream/%E0%A4%A`)],
    ['bad percent-encoding in a history path', () => get(`${proc.url}/timeline/%ZZ`)],
    ['invalid JSON', () => postExecuteRaw(proc.url, '{"project_id":')],
    ['body over the limit', () => postExecuteRaw(proc.url, JSON.stringify({ project_id: 'p', query: 'x'.repeat(300 * 1024) }))],
    ['missing fields', () => postExecuteRaw(proc.url, JSON.stringify({ query: 'q' }))],
    ['not JSON', () => postExecuteRaw(proc.url, 'project_id=p', { 'Content-Type': 'application/x-www-form-urlencoded' })],
    ['context nested 100,000 levels', () => postExecuteRaw(proc.url, `{"project_id":"p","query":"q","context":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)],
    ['headers over the limit', async () => {
      const response = parseRawResponse(await sendRaw(proc.url, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'x'.repeat(20_000)}\r\n\r\n`));
      return { status: response.status, text: response.body };
    }],
    ['a malformed request line', async () => {
      const response = parseRawResponse(await sendRaw(proc.url, 'GARBAGE\r\n\r\n'));
      return { status: response.status, text: response.body };
    }],
  ];

  it('answers malformed requests with a 4xx JSON error, never a 500', async () => {
    const proc = await startProcess();
    const answers: Array<{ name: string; status: number; body: unknown }> = [];
    for (const [name, send] of malformed(proc)) {
      const response = await send();
      answers.push({ name, status: response.status, body: JSON.parse(response.text) });
    }
    const errorShape = { error: { code: expect.stringMatching(/^[a-z_]+$/), message: expect.any(String) } };
    for (const { name, status, body } of answers) {
      // The request's name in the assertion says which one went wrong.
      expect({ name, clientError: status >= 400 && status < 500, body }).toEqual({ name, clientError: true, body: errorShape });
    }
  });

  it('logs no stack trace for malformed requests, even at LOG_LEVEL=trace', async () => {
    const proc = await startProcess({ LOG_LEVEL: 'trace' });
    for (const [, send] of malformed(proc)) await send();
    const exit = await within(proc.stop('SIGTERM'), 10000, 'the process to exit');

    expect(exit.code).toBe(0);
    expect(proc.logs().some((l) => l.msg === 'shutting down')).toBe(true);
    const withStacks = proc.logs().filter((l) => JSON.stringify(l).includes('"stack"') || /\n\s+at /.test(JSON.stringify(l)));
    expect(withStacks).toEqual([]);
    expect(proc.stderr).toBe('');
  });
});

