import { TokenCoalescer } from '../../server/workflows/token-coalescer';
import type { StepDraft } from '../../server/workflows/workflow';

function recorder() {
  const steps: StepDraft[] = [];
  return { steps, emit: async (step: StepDraft) => void steps.push(step) };
}

const texts = (steps: StepDraft[]) => steps.map((s) => s.details?.text);

describe('TokenCoalescer', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('emits the deltas of one interval as a single AGENT_TOKEN step', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'writer', { intervalMs: 50 });
    tokens.push('Hello');
    await jest.advanceTimersByTimeAsync(20);
    tokens.push(' big');
    tokens.push(' world');
    await jest.advanceTimersByTimeAsync(29);
    expect(ctx.steps).toHaveLength(0);

    await jest.advanceTimersByTimeAsync(1);
    expect(ctx.steps).toEqual([
      {
        type: 'AGENT_TOKEN',
        status: 'IN_PROGRESS',
        message: 'Writer streamed 15 characters',
        agent_name: 'writer',
        details: { text: 'Hello big world', chars: 15 },
      },
    ]);
  });

  it('defaults to a 50 ms interval', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'writer');
    tokens.push('a');
    await jest.advanceTimersByTimeAsync(49);
    expect(ctx.steps).toHaveLength(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(ctx.steps).toHaveLength(1);
  });

  it('arms a new interval with the first delta after a flush', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'critic', { intervalMs: 50 });
    tokens.push('one');
    await jest.advanceTimersByTimeAsync(50);
    await jest.advanceTimersByTimeAsync(500);
    expect(jest.getTimerCount()).toBe(0);
    tokens.push(' two');
    await jest.advanceTimersByTimeAsync(50);
    expect(texts(ctx.steps)).toEqual(['one', ' two']);
  });

  it('flush() emits what remains at once and stops the timer', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'writer', { intervalMs: 50 });
    tokens.push('tail');
    await tokens.flush();
    expect(texts(ctx.steps)).toEqual(['tail']);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('never emits empty text', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'writer', { intervalMs: 50 });
    tokens.push('');
    expect(jest.getTimerCount()).toBe(0);
    await tokens.flush();
    tokens.push('x');
    await jest.advanceTimersByTimeAsync(50);
    await tokens.flush();
    expect(texts(ctx.steps)).toEqual(['x']);
  });

  it('emits in order, each emit after the previous one resolved', async () => {
    const started: string[] = [];
    const releases: Array<() => void> = [];
    const ctx = {
      emit: (step: StepDraft) =>
        new Promise<void>((resolve) => {
          started.push(String(step.details?.text));
          releases.push(resolve);
        }),
    };
    const tokens = new TokenCoalescer(ctx, 'writer', { intervalMs: 50 });
    tokens.push('first');
    await jest.advanceTimersByTimeAsync(50);
    tokens.push('second');
    const flushed = tokens.flush();
    await jest.advanceTimersByTimeAsync(0);
    expect(started).toEqual(['first']);

    releases[0]();
    await jest.advanceTimersByTimeAsync(0);
    expect(started).toEqual(['first', 'second']);
    releases[1]();
    await flushed;
  });

  it('rejects flush() with the error of a failed timer emit, and emits nothing after it', async () => {
    const failure = new Error('bus down');
    const emit = jest.fn().mockRejectedValueOnce(failure).mockResolvedValue(undefined);
    const tokens = new TokenCoalescer({ emit }, 'writer', { intervalMs: 50 });
    tokens.push('lost');
    await jest.advanceTimersByTimeAsync(50);
    tokens.push('after');
    await expect(tokens.flush()).rejects.toBe(failure);
    expect(emit).toHaveBeenCalledTimes(1);
  });

  it('discard() drops what remains and stops the timer', async () => {
    const ctx = recorder();
    const tokens = new TokenCoalescer(ctx, 'writer', { intervalMs: 50 });
    tokens.push('dropped');
    tokens.discard();
    expect(jest.getTimerCount()).toBe(0);
    await tokens.flush();
    expect(ctx.steps).toHaveLength(0);
  });
});
