import { createSyntheticWorkflow, type SyntheticParams } from '../../server/workflows/synthetic';
import { recordingContext } from '../helpers/workflow-context';

const MAX_EVENTS = 100;
const workflow = createSyntheticWorkflow({ maxEvents: MAX_EVENTS });

function input(params: Partial<SyntheticParams>) {
  return {
    project_id: 'p1',
    query: 'load test',
    context: [],
    params: workflow.params.parse(params),
  };
}

describe('synthetic workflow', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('is named synthetic', () => {
    expect(workflow.name).toBe('synthetic');
  });

  it('emits exactly `events` AGENT_MESSAGE steps numbered 1..n with an exact pad', async () => {
    const ctx = recordingContext();
    const before = Date.now();
    const result = await workflow.run(input({ events: 5, payload_bytes: 100 }), ctx);

    expect(result).toEqual({ events: 5 });
    expect(ctx.steps.map((s) => s.type)).toEqual(Array(5).fill('AGENT_MESSAGE'));
    expect(ctx.steps.map((s) => s.details?.i)).toEqual([1, 2, 3, 4, 5]);
    expect(ctx.steps.map((s) => s.message)).toEqual([1, 2, 3, 4, 5].map((i) => `Synthetic event ${i}/5`));
    expect(ctx.steps.map((s) => s.status)).toEqual([
      'IN_PROGRESS',
      'IN_PROGRESS',
      'IN_PROGRESS',
      'IN_PROGRESS',
      'SUCCESS',
    ]);
    for (const step of ctx.steps) {
      expect(step.agent_name).toBe('synthetic');
      expect(step.details?.pad).toBe('x'.repeat(100));
      expect(step.details?.sent_at).toBeGreaterThanOrEqual(before);
      expect(step.details?.sent_at).toBeLessThanOrEqual(Date.now());
    }
    const mono = ctx.steps.map((s) => s.details?.sent_mono_ms as number);
    expect(mono.every((ms, k) => k === 0 || ms >= mono[k - 1])).toBe(true);
  });

  it('defaults to 10 events back to back with an empty pad, also when params are left out', async () => {
    expect(workflow.params.parse({})).toEqual({ events: 10, interval_ms: 0, payload_bytes: 0 });
    expect(workflow.params.parse(undefined)).toEqual({ events: 10, interval_ms: 0, payload_bytes: 0 });
    const ctx = recordingContext();
    await workflow.run(input({}), ctx);
    expect(ctx.steps).toHaveLength(10);
    expect(ctx.steps[0].details?.pad).toBe('');
  });

  it('keeps the default events within a small maxEvents', () => {
    const small = createSyntheticWorkflow({ maxEvents: 3 });
    expect(small.params.parse({})).toMatchObject({ events: 3 });
  });

  it.each([
    [{ events: 0 }],
    [{ events: MAX_EVENTS + 1 }],
    [{ events: 2.5 }],
    [{ events: '5' }],
    [{ interval_ms: -1 }],
    [{ interval_ms: 60_001 }],
    [{ payload_bytes: -1 }],
    [{ payload_bytes: 65_537 }],
    [{ events: 5, extra: true }],
  ])('rejects params %j', (params) => {
    expect(workflow.params.safeParse(params).success).toBe(false);
  });

  it('accepts params at their bounds', () => {
    expect(
      workflow.params.parse({ events: MAX_EVENTS, interval_ms: 60_000, payload_bytes: 65_536 }),
    ).toEqual({ events: MAX_EVENTS, interval_ms: 60_000, payload_bytes: 65_536 });
    expect(workflow.params.parse({ events: 1 })).toMatchObject({ events: 1 });
  });

  it('waits interval_ms between events, not before the first', async () => {
    jest.useFakeTimers();
    const ctx = recordingContext();
    const run = workflow.run(input({ events: 3, interval_ms: 1000 }), ctx);
    await jest.advanceTimersByTimeAsync(0);
    expect(ctx.steps).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(999);
    expect(ctx.steps).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(ctx.steps).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(1000);
    expect(ctx.steps).toHaveLength(3);
    await expect(run).resolves.toEqual({ events: 3 });
  });

  it('stops at once when aborted during an interval, rejecting with the reason', async () => {
    jest.useFakeTimers();
    const ctx = recordingContext();
    const run = workflow.run(input({ events: 3, interval_ms: 60_000 }), ctx);
    await jest.advanceTimersByTimeAsync(0);
    const reason = new Error('cancelled');
    ctx.controller.abort(reason);
    await expect(run).rejects.toBe(reason);
    expect(ctx.steps).toHaveLength(1);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('stops when aborted between back-to-back events', async () => {
    const reason = new Error('cancelled');
    const ctx = recordingContext({
      onEmit: (step, c) => {
        if (step.details?.i === 2) c.controller.abort(reason);
      },
    });
    await expect(workflow.run(input({ events: 5 }), ctx)).rejects.toBe(reason);
    expect(ctx.steps).toHaveLength(2);
  });
});
