import type {
  Model,
  ModelCallOptions,
  ModelReply,
  ModelRequest,
} from '../../server/models/model';
import { ScriptedModel } from '../../server/models/scripted-model';
import {
  createAgentsWorkflow,
  parseRouteDecision,
  type AgentsParams,
  type AgentsResult,
} from '../../server/workflows/agents';
import type { StepDraft, Workflow } from '../../server/workflows/workflow';
import { recordingContext, type RecordingContext, type RecordingContextOptions } from '../helpers/workflow-context';

/** Passes every call to a real model and records what went in and came out. */
class RecordingModel implements Model {
  readonly name = 'recording';
  readonly calls: Array<{ request: ModelRequest; signal: AbortSignal; deltas: number; reply?: ModelReply }> = [];
  private started: Array<() => void> = [];

  constructor(private readonly inner: Model = new ScriptedModel({ tokenDelayMs: 0 })) {}

  async stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply> {
    const call: (typeof this.calls)[number] = { request, signal: options.signal, deltas: 0 };
    this.calls.push(call);
    this.started.splice(0).forEach((resolve) => resolve());
    call.reply = await this.inner.stream(request, {
      signal: options.signal,
      onText: (delta) => {
        call.deltas++;
        options.onText?.(delta);
      },
    });
    return call.reply;
  }

  /** Resolves when the next model call starts. */
  nextCall(): Promise<void> {
    return new Promise((resolve) => this.started.push(resolve));
  }
}

/** Collapses runs of AGENT_TOKEN into one, so sequences compare independent of timing. */
function shape(steps: StepDraft[]): string[] {
  return steps
    .map((s) => (s.agent_name ? `${s.type}:${s.agent_name}` : s.type))
    .filter((t, k, all) => !(t.startsWith('AGENT_TOKEN') && all[k - 1] === t));
}

function tokenText(steps: StepDraft[], agent: string): string {
  return steps
    .filter((s) => s.type === 'AGENT_TOKEN' && s.agent_name === agent)
    .map((s) => s.details?.text)
    .join('');
}

const workflow = createAgentsWorkflow();

/** Starts a run of `wf` on `query` in `ctx`, its params read as the API reads them. */
function startRun(
  wf: Workflow<AgentsParams>,
  ctx: RecordingContext,
  query: string,
  params: Partial<AgentsParams> = {},
): Promise<AgentsResult> {
  return wf.run({ project_id: 'p1', query, context: [], params: wf.params.parse(params) }, ctx) as Promise<AgentsResult>;
}

async function runAgents(
  query: string,
  params: Partial<AgentsParams> = {},
  options: RecordingContextOptions = {},
) {
  const model = (options.model as RecordingModel | undefined) ?? new RecordingModel();
  const ctx = recordingContext({ ...options, model });
  const result = await startRun(workflow, ctx, query, params);
  return { ctx, model, result };
}

describe('agents workflow', () => {
  it('routes a writing request to the writer and streams its answer', async () => {
    const { ctx, model, result } = await runAgents('Write a short poem about Redis streams');

    expect(shape(ctx.steps)).toEqual([
      'ROUTER_THOUGHT:router',
      'AGENT_START:writer',
      'AGENT_TOKEN:writer',
      'AGENT_COMPLETE:writer',
    ]);
    expect(ctx.steps[0]).toMatchObject({
      status: 'SUCCESS',
      message: 'Router chose writer (confidence 0.9)',
      details: { route: 'writer', confidence: 0.9 },
    });
    expect(ctx.steps[1].message).toBe('Writer started');
    const complete = ctx.steps.at(-1)!;
    expect(complete.details?.text).toBe(result.answer);
    expect(complete.details?.usage).toEqual(model.calls[1].reply?.usage);
    expect(tokenText(ctx.steps, 'writer')).toBe(result.answer);
    expect(result.answer).toContain('Write a short poem about Redis streams');
    expect(result.route).toBe('writer');
    expect(model.calls.map((c) => c.request.purpose)).toEqual(['route', 'writer']);
  });

  it('gives every step a human-readable message', async () => {
    const { ctx } = await runAgents('Compare tabs and spaces', { turns: 2 });
    for (const step of ctx.steps) expect(step.message).toMatch(/^[A-Z]\w* .+/);
  });

  it('runs the researcher with a search tool call whose findings reach the model', async () => {
    const query = 'How does TCP congestion control work?';
    const { ctx, model, result } = await runAgents(query);

    expect(shape(ctx.steps)).toEqual([
      'ROUTER_THOUGHT:router',
      'AGENT_START:researcher',
      'TOOL_CALL:researcher',
      'AGENT_TOKEN:researcher',
      'AGENT_COMPLETE:researcher',
    ]);
    const tool = ctx.steps[2];
    expect(tool.details).toMatchObject({ tool: 'search', input: { query } });
    const findings = tool.details?.output as string[];
    expect(findings.length).toBeGreaterThan(0);
    const prompt = model.calls[1].request.messages[0].content;
    for (const finding of findings) expect(prompt).toContain(finding);
    expect(tokenText(ctx.steps, 'researcher')).toBe(result.answer);
    expect(result.route).toBe('researcher');
  });

  it.each([2, 3, 4])('runs a discussion of %i alternating turns, then a synthesis', async (turns) => {
    const { ctx, model, result } = await runAgents('Should we use Kafka versus Redis?', { turns });

    const speakers = Array.from({ length: turns }, (_, k) => (k % 2 === 0 ? 'advocate' : 'critic'));
    expect(shape(ctx.steps)).toEqual([
      'ROUTER_THOUGHT:router',
      ...speakers.flatMap((s) => [`AGENT_START:${s}`, `AGENT_TOKEN:${s}`, `AGENT_MESSAGE:${s}`]),
      'AGENT_START:moderator',
      'AGENT_TOKEN:moderator',
      'AGENT_COMPLETE:moderator',
    ]);
    const messages = ctx.steps.filter((s) => s.type === 'AGENT_MESSAGE');
    expect(messages.map((m) => m.agent_name)).toEqual(speakers);
    expect(messages.map((m) => m.details?.turn)).toEqual(speakers.map((_, k) => k + 1));

    // Each turn's model call sees the transcript of every earlier turn.
    const turnCalls = model.calls.slice(1, 1 + turns);
    turnCalls.forEach((call, k) => {
      expect(call.request.purpose).toBe(speakers[k]);
      for (const earlier of messages.slice(0, k)) {
        expect(call.request.messages[0].content).toContain(earlier.details?.text as string);
      }
    });
    expect(result.answer).toBe(ctx.steps.at(-1)?.details?.text);
    expect(tokenText(ctx.steps, 'moderator')).toBe(result.answer);
    expect(result.route).toBe('discussion');
  });

  it('sums usage over every model call and passes the run signal to each', async () => {
    const { ctx, model, result } = await runAgents('Pros and cons of monorepos', { turns: 2 });
    expect(model.calls).toHaveLength(4);
    const sum = (key: 'input_tokens' | 'output_tokens') =>
      model.calls.reduce((total, c) => total + (c.reply?.usage[key] ?? 0), 0);
    expect(result.usage).toEqual({ input_tokens: sum('input_tokens'), output_tokens: sum('output_tokens') });
    expect(result.usage.output_tokens).toBeGreaterThan(0);
    expect(model.calls.every((c) => c.signal === ctx.signal)).toBe(true);
  });

  it('reports each model call\'s usage with the step that ends it', async () => {
    const { ctx, model } = await runAgents('Compare tabs versus spaces', { turns: 2 });
    const usageOf = (k: number) => model.calls[k].reply?.usage;
    const router = ctx.steps.find((s) => s.type === 'ROUTER_THOUGHT');
    expect(router?.details?.usage).toEqual(usageOf(0));
    const turns = ctx.steps.filter((s) => s.type === 'AGENT_MESSAGE');
    expect(turns.map((t) => t.details?.usage)).toEqual([usageOf(1), usageOf(2)]);
    expect(ctx.steps.at(-1)).toMatchObject({ type: 'AGENT_COMPLETE', details: { usage: usageOf(3) } });
    expect(usageOf(1)?.output_tokens).toBeGreaterThan(0);
  });

  it('honours a forced route without asking the model to route', async () => {
    const { ctx, model, result } = await runAgents('How do tides work?', { route: 'writer' });
    expect(ctx.steps[0]).toMatchObject({ type: 'ROUTER_THOUGHT' });
    // No model call decided it, so there is no usage to report.
    expect(ctx.steps[0].details).toEqual({ route: 'writer', reason: 'forced by params.route', confidence: 1 });
    expect(model.calls.map((c) => c.request.purpose)).toEqual(['writer']);
    expect(result.route).toBe('writer');
  });

  it('falls back to the researcher when the router reply is not a decision', async () => {
    const confused: Model = {
      name: 'confused',
      stream: async (request, options) =>
        request.purpose === 'route'
          ? { text: 'I think a writer, maybe?', usage: { input_tokens: 3, output_tokens: 6 } }
          : new ScriptedModel({ tokenDelayMs: 0 }).stream(request, options),
    };
    const { ctx, result } = await runAgents('Write a poem', {}, { model: new RecordingModel(confused) });
    expect(ctx.steps[0].details).toMatchObject({ route: 'researcher', confidence: 0.2 });
    expect(result.route).toBe('researcher');
  });

  it('coalesces tokens: far fewer AGENT_TOKEN steps than streamed deltas', async () => {
    const model = new RecordingModel(new ScriptedModel({ tokenDelayMs: 1 }));
    const { ctx } = await runAgents('Write an email about the release', {}, { model });
    const tokenSteps = ctx.steps.filter((s) => s.type === 'AGENT_TOKEN').length;
    expect(model.calls[1].deltas).toBeGreaterThan(20);
    expect(tokenSteps).toBeGreaterThanOrEqual(1);
    expect(tokenSteps * 3).toBeLessThan(model.calls[1].deltas);
  });

  it('emits one AGENT_TOKEN per call when the model is faster than the interval', async () => {
    const slowFlush = createAgentsWorkflow({ tokenIntervalMs: 60_000 });
    const ctx = recordingContext();
    await startRun(slowFlush, ctx, 'Compare A and B', { turns: 2 });
    const tokenAgents = ctx.steps.filter((s) => s.type === 'AGENT_TOKEN').map((s) => s.agent_name);
    expect(tokenAgents).toEqual(['advocate', 'critic', 'moderator']);
  });

  it('rejects promptly with the abort reason when aborted during a model call', async () => {
    const model = new RecordingModel(new ScriptedModel({ tokenDelayMs: 60_000 }));
    const ctx = recordingContext({ model });
    const started = model.nextCall();
    const run = startRun(workflow, ctx, 'Write a poem');
    await started;
    const reason = new Error('cancelled');
    ctx.controller.abort(reason);
    await expect(run).rejects.toBe(reason);
    expect(ctx.steps).toHaveLength(0);
  }, 2000);

  it('stops streaming once aborted mid-answer', async () => {
    const reason = new Error('cancelled');
    const model = new RecordingModel(new ScriptedModel({ tokenDelayMs: 2 }));
    const ctx = recordingContext({
      model,
      onEmit: (step, c) => {
        if (step.type === 'AGENT_TOKEN') c.controller.abort(reason);
      },
    });
    const fastFlush = createAgentsWorkflow({ tokenIntervalMs: 5 });
    const run = startRun(fastFlush, ctx, 'Write a story');
    await expect(run).rejects.toBe(reason);
    expect(shape(ctx.steps)).toEqual(['ROUTER_THOUGHT:router', 'AGENT_START:writer', 'AGENT_TOKEN:writer']);
    expect(model.calls[1].reply).toBeUndefined();
  }, 2000);

  it('does not go on to the next step when aborted while the last tokens are emitted', async () => {
    const reason = new Error('cancelled');
    const ctx = recordingContext({
      onEmit: (step, c) => {
        if (step.type === 'AGENT_TOKEN') c.controller.abort(reason);
      },
    });
    // Only the final flush emits tokens, after the model call is over.
    const slowFlush = createAgentsWorkflow({ tokenIntervalMs: 60_000 });
    const run = startRun(slowFlush, ctx, 'Write a story');
    await expect(run).rejects.toBe(reason);
    expect(ctx.steps.at(-1)?.type).toBe('AGENT_TOKEN');
  });

  it('rejects unknown or out-of-range params', () => {
    expect(workflow.params.parse(undefined)).toEqual({ turns: 4 });
    for (const bad of [{ turns: 1 }, { turns: 11 }, { turns: 2.5 }, { route: 'poet' }, { extra: 1 }]) {
      expect(workflow.params.safeParse(bad).success).toBe(false);
    }
    expect(workflow.params.parse({ route: 'discussion', turns: 10 })).toEqual({ route: 'discussion', turns: 10 });
  });
});

describe('parseRouteDecision', () => {
  it.each([
    ['{"route":"writer","reason":"asks for a poem","confidence":0.9}', 'writer', 0.9],
    ['```json\n{"route": "discussion", "reason": "a comparison", "confidence": 0.7}\n```', 'discussion', 0.7],
    ['Sure! Here is my decision: {"route":"Researcher","reason":"facts"} Hope it helps.', 'researcher', 0.5],
    ['{"route":"writer","reason":"x","confidence":7}', 'writer', 0.5],
  ])('reads %j', (text, route, confidence) => {
    expect(parseRouteDecision(text)).toMatchObject({ route, confidence });
  });

  it.each(['writer', '{"route": "poet"}', '{route: writer}', ''])('finds no decision in %j', (text) => {
    expect(parseRouteDecision(text)).toBeUndefined();
  });
});
