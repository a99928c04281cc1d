import type { ModelRequest } from '../../server/models/model';
import { ScriptedModel } from '../../server/models/scripted-model';

function request(purpose: string, content: string, maxTokens = 1024): ModelRequest {
  return { purpose, system: 'You are a test agent.', messages: [{ role: 'user', content }], maxTokens };
}

async function collect(model: ScriptedModel, req: ModelRequest) {
  const deltas: string[] = [];
  const reply = await model.stream(req, {
    signal: new AbortController().signal,
    onText: (delta) => deltas.push(delta),
  });
  return { reply, deltas };
}

describe('ScriptedModel', () => {
  const model = new ScriptedModel({ tokenDelayMs: 0 });

  it('is named scripted', () => {
    expect(model.name).toBe('scripted');
  });

  it('streams word-sized deltas that add up to the reply, and counts them as output tokens', async () => {
    const { reply, deltas } = await collect(model, request('writer', 'A haiku about queues'));
    expect(deltas.length).toBeGreaterThanOrEqual(24);
    expect(deltas.every((d) => d.trim() !== '' && d.trim().split(/\s+/).length === 1)).toBe(true);
    expect(deltas.join('')).toBe(reply.text);
    expect(reply.usage.output_tokens).toBe(deltas.length);
    // system (5 words) + prompt (4 words)
    expect(reply.usage.input_tokens).toBe(9);
  });

  it('writes readable prose that mentions the query, the same way every time', async () => {
    const req = request('researcher', 'Question: How do Redis Streams work?\n\nSearch findings:\n- x');
    const first = await collect(model, req);
    const second = await collect(model, req);
    expect(first.reply.text).toContain('How do Redis Streams work?');
    expect(first.reply.text).not.toContain('Question:');
    expect(first.reply.text).toMatch(/^[A-Z].*\.$/s);
    expect(second.reply.text).toBe(first.reply.text);
  });

  it('writes differently for different purposes', async () => {
    const texts = await Promise.all(
      ['writer', 'researcher', 'advocate', 'critic', 'moderator', 'something-else'].map(
        async (purpose) => (await collect(model, request(purpose, 'Tabs or spaces'))).reply.text,
      ),
    );
    expect(new Set(texts).size).toBe(texts.length);
  });

  it('stops at maxTokens', async () => {
    const { reply, deltas } = await collect(model, request('writer', 'A limerick', 5));
    expect(deltas).toHaveLength(5);
    expect(reply.usage.output_tokens).toBe(5);
    expect(reply.text).toBe(deltas.join(''));
  });

  it.each([
    ['Write a poem about the sea', 'writer'],
    ['Draft an email to the team', 'writer'],
    ['Compare Redis and Kafka', 'discussion'],
    ['Postgres vs MySQL for analytics', 'discussion'],
    ['Should we adopt microservices?', 'discussion'],
    ['What are the pros and cons of remote work?', 'discussion'],
    ['How does TCP congestion control work?', 'researcher'],
  ])('routes %j to %s with a JSON decision', async (query, route) => {
    const { reply } = await collect(model, request('route', query));
    const decision = JSON.parse(reply.text) as Record<string, unknown>;
    expect(decision.route).toBe(route);
    expect(typeof decision.reason).toBe('string');
    expect(decision.confidence).toBeGreaterThan(0);
    expect(decision.confidence).toBeLessThanOrEqual(1);
  });

  it('routes on the last user message', async () => {
    const req: ModelRequest = {
      purpose: 'route',
      system: '',
      messages: [
        { role: 'user', content: 'Write a story' },
        { role: 'assistant', content: 'Sure.' },
        { role: 'user', content: 'Actually, how do tides work?' },
      ],
      maxTokens: 200,
    };
    const { reply } = await collect(model, req);
    expect(JSON.parse(reply.text)).toMatchObject({ route: 'researcher' });
  });

  describe('abort', () => {
    afterEach(() => {
      jest.useRealTimers();
    });

    it('rejects with the abort reason mid-stream and clears its timer', async () => {
      jest.useFakeTimers();
      const slow = new ScriptedModel({ tokenDelayMs: 60_000 });
      const controller = new AbortController();
      const deltas: string[] = [];
      const reply = slow.stream(request('writer', 'An ode to timers'), {
        signal: controller.signal,
        onText: (delta) => deltas.push(delta),
      });
      await jest.advanceTimersByTimeAsync(120_000);
      expect(deltas).toHaveLength(2);
      expect(jest.getTimerCount()).toBe(1);

      const reason = new Error('cancelled by test');
      controller.abort(reason);
      await expect(reply).rejects.toBe(reason);
      expect(jest.getTimerCount()).toBe(0);
      expect(deltas).toHaveLength(2);
    });

    it('rejects with an AbortError when aborted without a reason', async () => {
      const slow = new ScriptedModel({ tokenDelayMs: 60_000 });
      const controller = new AbortController();
      const reply = slow.stream(request('writer', 'Anything'), { signal: controller.signal });
      controller.abort();
      await expect(reply).rejects.toMatchObject({ name: 'AbortError' });
    });

    it('rejects at once, without streaming, when already aborted', async () => {
      const controller = new AbortController();
      controller.abort(new Error('already gone'));
      const onText = jest.fn();
      await expect(
        model.stream(request('writer', 'Anything'), { signal: controller.signal, onText }),
      ).rejects.toThrow('already gone');
      expect(onText).not.toHaveBeenCalled();
    });
  });
});
