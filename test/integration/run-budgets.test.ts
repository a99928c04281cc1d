import jwt from 'jsonwebtoken';
import { z } from 'zod';
import type { DonePayload, TimelineEvent } from '../../client-sdk/src/types';
import { createDefaultRegistry } from '../../server/workflows/registry';
import type { Workflow } from '../../server/workflows/workflow';
import { cancelSession, executeAsync, expectJsonError, getHistory, postExecuteRaw } from '../helpers/api';
import { newSessionId, startService, synthetic, type RunningService } from '../helpers/service';
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
    const registry = createDefaultRegistry({ enableSynthetic: true, maxEventsPerSession: 100 }).register(stuckWorkflow);
    svc = await startService({ maxRunDurationMs: 400, keepAliveMs: null }, { registry });
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
