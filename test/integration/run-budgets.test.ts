import jwt from 'jsonwebtoken';
import { z } from 'zod';
import type { DonePayload, TimelineEvent } from '../../client-sdk/src/types';
import type { Workflow } from '../../server/workflows/workflow';
import { cancelSession, executeAsync, expectJsonError, getHistory, postExecuteRaw } from '../helpers/api';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { newSessionId, startRedisService, startService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, openReady, timelineEvents } from '../helpers/sse-reader';
import { waitUntil, within } from '../helpers/wait';

/** What one run may cost: its duration, and (below) the runs of one caller, its events' bytes. */

/** Emits one step, then never returns and never looks at its signal. */
const stuckWorkflow: Workflow = {
  name: 'stuck',
  description: 'Ignores its signal and never returns',
  params: z.object({}),
  async run(_input, ctx) {
    await ctx.emit({ type: 'AGENT_START', status: 'IN_PROGRESS', message: 'Started', agent_name: 'stuck' });
    return new Promise(() => undefined);
  },
};

describe('MAX_RUN_DURATION_MS', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ maxRunDurationMs: 400, keepAliveMs: null }, { workflows: [stuckWorkflow] });
  });
  afterAll(() => svc.close());

  it('fails a run that outlives it with run_timeout: WORKFLOW_ERROR, done, and 504 for a held POST', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    const response = await within(
      postExecuteRaw(svc.url, JSON.stringify(synthetic(sessionId, { events: 3, interval_ms: 60000 }))),
      10000,
      'the held POST to be answered',
    );
    expectJsonError(response, 504, 'run_timeout');
    expect(response.json.session_id).toBe(sessionId);
    const done = await reader.waitFor(isNamed('done'), 5000, 'done');
    const error = { code: 'run_timeout', message: expect.stringContaining('MAX_RUN_DURATION_MS') };
    expect(JSON.parse(done.data) as DonePayload).toEqual({ status: 'failed', error });
    const events = timelineEvents<TimelineEvent>(reader);
    expect(events.map((event) => event.type)).toEqual(['WORKFLOW_START', 'AGENT_MESSAGE', 'WORKFLOW_ERROR']);
    expect(events.at(-1)?.details).toEqual({ error });
  });

  it('ends a run whose workflow ignores its signal and never returns, and frees its slot', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    expect((await executeAsync(svc.url, { project_id: 'p', query: 'q', session_id: sessionId, workflow: 'stuck' })).status).toBe(202);
    const done = await reader.waitFor(isNamed('done'), 5000, 'done');
    expect(JSON.parse(done.data)).toMatchObject({ status: 'failed', error: { code: 'run_timeout' } });
    expect(timelineEvents<TimelineEvent>(reader).map((event) => event.type)).toEqual(['WORKFLOW_START', 'AGENT_START', 'WORKFLOW_ERROR']);
    await waitUntil(() => svc.service.runs.activeCount === 0, { label: 'the run slot to be free' });
    expect((await getHistory(svc.url, sessionId)).json.status).toBe('failed');
  });

  it('leaves a run within the budget alone', async () => {
    const response = await executeAsync(svc.url, synthetic(newSessionId(), { events: 3, interval_ms: 10 }));
    expect(response.status).toBe(202);
    const done = await (await openReady(`${svc.url}/timeline/stream/${response.json.session_id}`)).waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 3 } });
  });
});

describe('MAX_RUNS_PER_CALLER', () => {
  const LIMIT = 2;
  /** Runs until cancelled. */
  const long = (sessionId = newSessionId()) => synthetic(sessionId, { events: 2, interval_ms: 60000 });
  const JWT_SECRET = 'caller-limit-secret';
  const bearer = (sub: string) => ({ Authorization: `Bearer ${jwt.sign({ sub }, JWT_SECRET, { algorithm: 'HS256', expiresIn: 300 })}` });
  const from = (address: string) => ({ 'X-Forwarded-For': address });

  /** Starts runs with `headers` until refused; answers the started session ids and the refusal. */
  async function fill(url: string, headers: Record<string, string>) {
    const started: string[] = [];
    for (;;) {
      const sessionId = newSessionId();
      const response = await executeAsync(url, long(sessionId), headers);
      if (response.status !== 202) return { started, refused: response };
      started.push(sessionId);
    }
  }

  const cancelAll = async (svc: RunningService, sessions: string[], headers: Record<string, string> = {}) => {
    for (const sessionId of sessions) expect((await cancelSession(svc.url, sessionId, headers)).status).toBe(202);
  };

  describe('auth off: per client address', () => {
    let plain: RunningService;
    let proxied: RunningService;
    beforeAll(async () => {
      plain = await startService({ maxRunsPerCaller: LIMIT, keepAliveMs: null, retryMs: 3000 });
      proxied = await startService({ maxRunsPerCaller: LIMIT, trustProxy: ['loopback'], keepAliveMs: null });
    });
    afterAll(async () => {
      await plain.close();
      await proxied.close();
    });

    it('answers 429 too_many_caller_runs with Retry-After past the limit, claims nothing, and admits again once a run ends', async () => {
      const { started, refused } = await fill(plain.url, {});
      expect(started).toHaveLength(LIMIT);
      expectJsonError(refused, 429, 'too_many_caller_runs');
      expect(refused.headers.get('retry-after')).toBe('3');
      // X-Forwarded-For is not believed without TRUST_PROXY: the same client.
      expectJsonError(await executeAsync(plain.url, long(), from('198.51.100.9')), 429, 'too_many_caller_runs');
      await cancelAll(plain, started.slice(0, 1));
      await waitUntil(() => plain.service.runs.activeCount === LIMIT - 1, { label: 'the cancelled run to end' });
      const again = await executeAsync(plain.url, long(), {});
      expect(again.status).toBe(202);
      await cancelAll(plain, [...started.slice(1), again.json.session_id as string]);
    });

    it('counts each client address on its own behind a trusted proxy', async () => {
      const first = await fill(proxied.url, from('198.51.100.1'));
      expect(first.started).toHaveLength(LIMIT);
      expectJsonError(first.refused, 429, 'too_many_caller_runs');
      const second = await executeAsync(proxied.url, long(), from('198.51.100.2'));
      expect(second.status).toBe(202);
      await cancelAll(proxied, [...first.started, second.json.session_id as string]);
    });

    it('never admits more than the limit under a burst of concurrent starts by one client', async () => {
      const ids = Array.from({ length: 10 }, newSessionId);
      const answers = await Promise.all(ids.map((sessionId) => executeAsync(proxied.url, long(sessionId), from('198.51.100.3'))));
      expect(answers.map((answer) => answer.status).sort()).toEqual([...Array(LIMIT).fill(202), ...Array(10 - LIMIT).fill(429)]);
      await cancelAll(proxied, ids.filter((_id, i) => answers[i].status === 202));
    });
  });

  describe('auth on: per caller, whatever its address', () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ maxRunsPerCaller: LIMIT, jwtSecret: JWT_SECRET, keepAliveMs: null });
    });
    afterAll(() => svc.close());

    it('limits each token subject separately', async () => {
      const alice = await fill(svc.url, bearer('alice'));
      expect(alice.started).toHaveLength(LIMIT);
      expectJsonError(alice.refused, 429, 'too_many_caller_runs');
      const bob = await executeAsync(svc.url, long(), bearer('bob'));
      expect(bob.status).toBe(202);
      await cancelAll(svc, alice.started, bearer('alice'));
      await cancelAll(svc, [bob.json.session_id as string], bearer('bob'));
    });
  });
});

describe('MAX_EVENT_BYTES', () => {
  const LIMIT = 4096;
  /** Emits a step of `bytes` of message (awaited), then one more. */
  const oversized: Workflow = {
    name: 'oversized',
    description: 'Emits one step whose message is larger than MAX_EVENT_BYTES',
    params: z.object({}),
    async run(_input, ctx) {
      await ctx.emit({ type: 'AGENT_START', status: 'IN_PROGRESS', message: 'Before', agent_name: 'big' });
      await ctx.emit({ type: 'AGENT_MESSAGE', status: 'IN_PROGRESS', message: 'x'.repeat(LIMIT), agent_name: 'big' });
      return 'not reached';
    },
  };
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ maxEventBytes: LIMIT, keepAliveMs: null }, { workflows: [oversized] });
  });
  afterAll(() => svc.close());

  it('fails a run whose workflow emits an event over it with event_too_large; the event is never published', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    const response = await postExecuteRaw(svc.url, JSON.stringify({ project_id: 'p', query: 'q', session_id: sessionId, workflow: 'oversized' }));
    expect(expectJsonError(response, 413, 'event_too_large')).toMatch(/^A AGENT_MESSAGE event of \d+ bytes is over the limit of 4096 bytes/);
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toMatchObject({ status: 'failed', error: { code: 'event_too_large' } });
    const events = timelineEvents<TimelineEvent>(reader);
    expect(events.map((event) => [event.seq, event.type])).toEqual([
      [1, 'WORKFLOW_START'],
      [2, 'AGENT_START'],
      [3, 'WORKFLOW_ERROR'],
    ]);
    expect(svc.service.runs.publishBudget.pendingBytes).toBe(0);
  });

  it('refuses a request whose WORKFLOW_START (it carries the query) would be over it: 413, nothing claimed', async () => {
    const sessionId = newSessionId();
    const response = await postExecuteRaw(svc.url, JSON.stringify({ ...synthetic(sessionId, { events: 1 }), query: 'q'.repeat(LIMIT) }));
    expect(expectJsonError(response, 413, 'event_too_large')).toContain('WORKFLOW_START');
    expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
  });

  it('bounds the synthetic payload to fit: 400 invalid_request beyond, a run at the bound completes', async () => {
    const over = await postExecuteRaw(svc.url, JSON.stringify(synthetic(newSessionId(), { events: 1, payload_bytes: LIMIT - 1024 + 1 })));
    expect(expectJsonError(over, 400, 'invalid_request')).toMatch(/^params\.payload_bytes/);
    const atBound = await executeAsync(svc.url, synthetic(newSessionId(), { events: 3, payload_bytes: LIMIT - 1024 }));
    expect(atBound.status).toBe(202);
    const done = await (await openReady(`${svc.url}/timeline/stream/${atBound.json.session_id}`)).waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 3 } });
  });
});

describe('MAX_PUBLISH_BACKLOG_BYTES', () => {
  /** Emits `count` steps of about 2 KiB each without awaiting any, then returns. */
  const firehose: Workflow<{ count: number }> = {
    name: 'firehose',
    description: 'Emits without awaiting its emits',
    params: z.object({ count: z.int().default(100) }),
    async run({ params }, ctx) {
      for (let i = 1; i <= params.count; i++) {
        void ctx.emit({ type: 'AGENT_MESSAGE', status: 'IN_PROGRESS', message: `${i} ${'x'.repeat(2000)}`, agent_name: 'firehose' });
      }
      return { emitted: params.count };
    },
  };
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ maxEventBytes: 4096, maxPublishBacklogBytes: 16 * 1024, keepAliveMs: null }, { workflows: [firehose as Workflow] });
  });
  afterAll(() => svc.close());

  it('fails a run that piles up more unpublished events than the instance holds, with publish_backlog_full, and keeps serving', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    const response = await postExecuteRaw(svc.url, JSON.stringify({ project_id: 'p', query: 'q', session_id: sessionId, workflow: 'firehose' }));
    expectJsonError(response, 503, 'publish_backlog_full');
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data)).toMatchObject({ status: 'failed', error: { code: 'publish_backlog_full' } });
    // What was taken was published in order, with no hole; then the terminal step.
    const events = timelineEvents<TimelineEvent>(reader);
    expect(events.map((event) => event.seq)).toEqual(events.map((_event, i) => i + 1));
    expect(events.length).toBeGreaterThan(3);
    expect(events.length).toBeLessThan(12);
    expect(events.at(-1)?.type).toBe('WORKFLOW_ERROR');
    expect(svc.service.runs.publishBudget.pendingBytes).toBe(0);
    // The instance is fine: a small run goes through.
    const next = await executeAsync(svc.url, { project_id: 'p', query: 'q', workflow: 'firehose', params: { count: 3 } });
    expect(next.status).toBe(202);
    const nextDone = await (await openReady(`${svc.url}/timeline/stream/${next.json.session_id}`)).waitFor(isNamed('done'));
    expect(JSON.parse(nextDone.data)).toEqual({ status: 'completed', result: { emitted: 3 } });
  });
});

describe('MAX_PUBLISH_BACKLOG_BYTES on Redis', () => {
  let redis: RedisServer;
  let svc: RunningService;
  beforeAll(async () => {
    redis = await startRedisServer();
    svc = await startRedisService(redis.url, { maxEventBytes: 4096, maxPublishBacklogBytes: 8192, busOutageMs: 60000, keepAliveMs: null });
  });
  afterAll(async () => {
    await svc?.close();
    await redis?.stop();
  });

  it('refuses new runs with 503 publish_backlog_full while events wait for an unreachable Redis, then admits again', async () => {
    // Two runs whose next event (3 KiB) will wait for Redis: 6 KiB held, no room left for a 4 KiB one.
    const running = [newSessionId(), newSessionId()];
    for (const sessionId of running) {
      expect((await executeAsync(svc.url, synthetic(sessionId, { events: 3, interval_ms: 300, payload_bytes: 3000 }))).status).toBe(202);
    }
    await redis.whileDown(async () => {
      await waitUntil(() => svc.service.runs.publishBudget.pendingBytes > 4096, { label: 'both runs to wait on Redis' });
      const refused = await executeAsync(svc.url, synthetic(newSessionId(), { events: 1 }));
      expectJsonError(refused, 503, 'publish_backlog_full');
      expect(refused.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    });
    // Redis is back: the held events are written, the runs complete, the backlog empties.
    for (const sessionId of running) {
      await waitUntil(async () => (await getHistory(svc.url, sessionId)).json.status === 'completed', { timeoutMs: 15000, label: `${sessionId} to complete` });
    }
    expect(svc.service.runs.publishBudget.pendingBytes).toBe(0);
    expect((await executeAsync(svc.url, synthetic(newSessionId(), { events: 1 }))).status).toBe(202);
  });
});
