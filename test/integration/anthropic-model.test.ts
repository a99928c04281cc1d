import pino from 'pino';
import { AnthropicModel, type AnthropicModelOptions } from '../../server/models/anthropic-model';
import { ModelError, type ModelReply, type ModelRequest } from '../../server/models/model';
import {
  closingSteps,
  errorReply,
  gatedReply,
  hangAfter,
  midStreamError,
  openingSteps,
  overloaded,
  rateLimited,
  startFakeAnthropic,
  textReply,
  type FakeAnthropic,
} from '../helpers/fake-anthropic';
import { waitUntil, within } from '../helpers/wait';

const REQUEST: ModelRequest = {
  purpose: 'writer',
  system: 'You are the writer.',
  messages: [{ role: 'user', content: 'Write a haiku about queues' }],
  maxTokens: 300,
};

describe('AnthropicModel against a local Messages API (real SDK, real sockets)', () => {
  let fake: FakeAnthropic;
  beforeEach(async () => {
    fake = await startFakeAnthropic();
  });
  afterEach(() => fake.close());

  const model = (options: Partial<AnthropicModelOptions> = {}) =>
    new AnthropicModel({
      apiKey: fake.apiKey,
      baseUrl: fake.url,
      model: 'claude-test',
      maxRetryDelayMs: 5,
      log: pino({ level: 'silent' }),
      ...options,
    });

  /** One call; records the deltas handed to onText. */
  const call = (m: AnthropicModel, signal = new AbortController().signal) => {
    const deltas: string[] = [];
    const reply = m.stream(REQUEST, {
      signal,
      onText: (delta) => deltas.push(delta),
    });
    return { reply, deltas };
  };

  const failure = async (reply: Promise<ModelReply>): Promise<ModelError> => {
    const error = await within(reply.then(() => null, (e: unknown) => e), 10000, 'the model call to fail');
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  };

  it('streams the answer as text deltas and reports the usage of the final message', async () => {
    fake.enqueue(textReply(['Queues', ' wait', ' in', ' line'], { inputTokens: 42, outputTokens: 7 }));
    const { reply, deltas } = call(model());
    expect(await reply).toEqual({ text: 'Queues wait in line', usage: { input_tokens: 42, output_tokens: 7 } });
    expect(deltas).toEqual(['Queues', ' wait', ' in', ' line']);

    const [sent] = fake.requests;
    expect(sent.url).toBe('/v1/messages');
    expect(sent.headers.authorization).toBe(`Bearer ${fake.apiKey}`);
    expect(sent.body).toEqual({
      model: 'claude-test',
      max_tokens: 300,
      system: 'You are the writer.',
      messages: [{ role: 'user', content: 'Write a haiku about queues' }],
      stream: true,
    });
  });

  it('hands over each delta as it arrives, not when the answer ends', async () => {
    fake.enqueue(gatedReply(['One', ' two', ' three'], [' four', ' five']));
    const { reply, deltas } = call(model());
    // The server holds the rest back until the first three deltas have reached the caller.
    await waitUntil(() => deltas.length === 3, { label: 'three deltas before the rest is sent' });
    expect(fake.requests[0].deltasSent).toBe(3);
    fake.release(0);
    expect((await reply).text).toBe('One two three four five');
    expect(deltas).toEqual(['One', ' two', ' three', ' four', ' five']);
  });

  it('an error event mid-stream fails the call with model_stream_error, after the text before it', async () => {
    fake.enqueue(midStreamError(['Half', ' an'], 'api_error', 'Internal server error'));
    const { reply, deltas } = call(model());
    const error = await failure(reply);
    expect(error.code).toBe('model_stream_error');
    // The provider's words go to the log (detail), never into the message clients see.
    expect(error.message).toBe('The model stream failed mid-answer');
    expect(error.detail).toBe('api_error: Internal server error');
    expect(deltas).toEqual(['Half', ' an']);
    expect(fake.requests).toHaveLength(1);
  });

  it('an overloaded_error event mid-stream fails with model_overloaded (no retry: text was already streamed)', async () => {
    fake.enqueue(midStreamError(['Half'], 'overloaded_error', 'Overloaded'));
    const error = await failure(call(model()).reply);
    expect(error.code).toBe('model_overloaded');
    expect(fake.requests).toHaveLength(1);
  });

  it('529 then success: the SDK retries and the call succeeds', async () => {
    fake.enqueue(overloaded(), textReply('Second time lucky'));
    const { reply } = call(model());
    expect((await reply).text).toBe('Second time lucky');
    expect(fake.requests.map((r) => r.headers['x-stainless-retry-count'])).toEqual(['0', '1']);
  });

  it('529 every time: bounded retries, then model_overloaded', async () => {
    fake.respond(() => overloaded());
    const error = await failure(call(model({ maxRetries: 2 })).reply);
    expect(error.code).toBe('model_overloaded');
    expect(error.message).toMatch(/overloaded.*after 2 retries/i);
    expect(fake.requests).toHaveLength(3);
  });

  it('429: retried, then model_rate_limited; a long retry-after is cut to maxRetryDelayMs', async () => {
    fake.respond(() => rateLimited({ 'retry-after': '3600' }));
    const started = Date.now();
    const error = await failure(call(model({ maxRetries: 1, maxRetryDelayMs: 20 })).reply);
    expect(error.code).toBe('model_rate_limited');
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('401 bad key: model_auth_failed at once, no retry, and the key is not in the message', async () => {
    const error = await failure(call(model({ apiKey: 'sk-ant-wrong-key' })).reply);
    expect(error.code).toBe('model_auth_failed');
    expect(error.message).toBe('The model provider refused the API key (HTTP 401)');
    expect(error.detail).toBe('401 authentication_error: invalid x-api-key');
    expect(`${error.message} ${error.detail}`).not.toContain('sk-ant-wrong-key');
    expect(fake.requests).toHaveLength(1);
  });

  it.each([
    [400, 'invalid_request_error', 'model_bad_request', 1],
    [404, 'not_found_error', 'model_bad_request', 1],
    [500, 'api_error', 'model_unavailable', 3],
  ])('%i %s: %s after %i request(s)', async (status, type, code, requests) => {
    fake.respond(() => errorReply(status, type, `${type} from the fake`));
    const error = await failure(call(model({ maxRetries: 2 })).reply);
    expect(error.code).toBe(code);
    expect(error.message).toContain(`HTTP ${status}`);
    expect(error.message).not.toContain('from the fake');
    expect(error.detail).toBe(`${status} ${type}: ${type} from the fake`);
    expect(fake.requests).toHaveLength(requests);
  });

  it('a connection cut mid-stream fails with model_connection_lost, after the text before it', async () => {
    fake.enqueue(hangAfter(['Before', ' the', ' cut']));
    const { reply, deltas } = call(model());
    await fake.deltasSent(0, 3);
    await waitUntil(() => deltas.length === 3, { label: 'three deltas' });
    fake.cut(0);
    const error = await failure(reply);
    expect(error.code).toBe('model_connection_lost');
    expect(deltas.join('')).toBe('Before the cut');
    expect(fake.requests).toHaveLength(1);
  });

  it('a stream closed before message_stop fails with model_connection_lost', async () => {
    fake.enqueue({ kind: 'stream', steps: [...openingSteps(), ...closingSteps(1).slice(0, 2)] });
    const error = await failure(call(model()).reply);
    expect(error.code).toBe('model_connection_lost');
  });

  it('a connection that drops before any response is retried, then fails with model_connection_lost', async () => {
    fake.respond(() => ({ kind: 'cut' }));
    const error = await failure(call(model({ maxRetries: 1 })).reply);
    expect(error.code).toBe('model_connection_lost');
    expect(fake.requests).toHaveLength(2);
  });

  it('a stream that goes silent fails with model_timeout and the request is closed', async () => {
    fake.enqueue(hangAfter(['Thinking']));
    const error = await failure(call(model({ idleTimeoutMs: 200 })).reply);
    expect(error.code).toBe('model_timeout');
    const [sent] = fake.requests;
    await within(sent.closed, 2000, 'the upstream request to close');
    expect(sent.closedByClient).toBe(true);
  });

  it('a slow but steady stream outlasts the idle timeout: each event re-arms it', async () => {
    const words = Array.from({ length: 8 }, (_, k) => ` t${k}`);
    fake.enqueue(textReply(words, { delayMs: 50 }));
    // 8 deltas 50 ms apart take twice the idle timeout in all.
    const { reply } = call(model({ idleTimeoutMs: 200 }));
    expect((await within(reply, 5000, 'the answer')).text).toBe(words.join(''));
  });

  describe('cancel', () => {
    it('aborting mid-stream rejects at once with the abort reason and closes the upstream request', async () => {
      fake.enqueue(textReply(Array.from({ length: 200 }, (_, k) => ` t${k}`), { delayMs: 20 }));
      const controller = new AbortController();
      const { reply, deltas } = call(model(), controller.signal);
      await fake.deltasSent(0, 2);
      await waitUntil(() => deltas.length >= 2, { label: 'two deltas' });

      const reason = new Error('cancelled by the test');
      const abortedAt = Date.now();
      controller.abort(reason);
      await expect(within(reply, 1000, 'the call to reject')).rejects.toBe(reason);
      expect(Date.now() - abortedAt).toBeLessThan(500);

      const [sent] = fake.requests;
      await within(sent.closed, 2000, 'the upstream request to close');
      expect(sent.closedByClient).toBe(true);
      const received = deltas.length;
      expect(sent.deltasSent).toBeLessThan(200);
      // Nothing is handed over after the abort.
      expect(deltas).toHaveLength(received);
    });

    it('aborting during a retry wait rejects at once and sends no further request', async () => {
      fake.respond(() => overloaded({ 'retry-after': '60' }));
      const controller = new AbortController();
      const { reply } = call(model({ maxRetryDelayMs: 60_000 }), controller.signal);
      await fake.request(0);
      const reason = new Error('cancelled while waiting');
      controller.abort(reason);
      await expect(within(reply, 1000, 'the call to reject')).rejects.toBe(reason);
      expect(fake.requests).toHaveLength(1);
    });

    it('an already aborted signal rejects with its reason and sends nothing', async () => {
      const controller = new AbortController();
      const reason = new Error('too late');
      controller.abort(reason);
      await expect(call(model(), controller.signal).reply).rejects.toBe(reason);
      expect(fake.requests).toHaveLength(0);
    });
  });
});
