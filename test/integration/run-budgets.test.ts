import { z } from 'zod';
import type { DonePayload, TimelineEvent } from '../../client-sdk/src/types';
import { createDefaultRegistry } from '../../server/workflows/registry';
import type { Workflow } from '../../server/workflows/workflow';
import { executeAsync, expectJsonError, getHistory, postExecuteRaw } from '../helpers/api';
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
