import { Writable } from 'node:stream';
import pino from 'pino';
import type { Config } from '../../server/config';
import type { ModelUsage } from '../../server/models/model';
import { createModel } from '../../server/models/select-model';
import { cancelSession, expectJsonError, getHistory, postExecuteRaw } from '../helpers/api';
import {
  errorReply,
  gatedReply,
  hangAfter,
  midStreamError,
  overloaded,
  rateLimited,
  startFakeAnthropic,
  textReply,
  cutAfter,
  type FakeAnthropic,
  type MessagesBody,
  type Reply,
} from '../helpers/fake-anthropic';
import { execute, newSessionId, startService, testConfig, type RunningService } from '../helpers/service';
import { isNamed, openReady, timelineEvents, type SseReader } from '../helpers/sse-reader';
import { within } from '../helpers/wait';

type Ev = { seq: number; type: string; status: string; agent_name?: string; details?: Record<string, any> };

const WRITER_WORDS = Array.from({ length: 24 }, (_, k) => ` word${k}`);
const ROUTER_USAGE = { input_tokens: 120, output_tokens: 30 };
const ANSWER_USAGE = { input_tokens: 200, output_tokens: 24 };

/** The fake's reply options that report `usage`. */
const reporting = (usage: ModelUsage) => ({ inputTokens: usage.input_tokens, outputTokens: usage.output_tokens });

/** The router's JSON decision, streamed like any other answer. */
const routerReply = (route: string): Reply =>
  textReply(
    JSON.stringify({ route, reason: `The request suits the ${route}.`, confidence: 0.8 }).match(/.{1,12}/g)!,
    reporting(ROUTER_USAGE),
  );

const isRouter = (body: MessagesBody) => body.system?.includes('You are the router') ?? false;

const slowAnswer = () => textReply(WRITER_WORDS, { delayMs: 10, ...reporting(ANSWER_USAGE) });

/** Routes to `route`; every agent answers with WRITER_WORDS, a delta every 10 ms. */
const claude =
  (route: string, agentReply: (body: MessagesBody) => Reply = slowAnswer) =>
  (body: MessagesBody) =>
    isRouter(body) ? routerReply(route) : agentReply(body);

describe('agents workflow on Claude (real SDK against a local Messages API)', () => {
  let fake: FakeAnthropic;
  let svc: RunningService;
  let config: Config;

  beforeAll(async () => {
    fake = await startFakeAnthropic();
    config = testConfig({
      anthropicApiKey: fake.apiKey,
      anthropicBaseUrl: fake.url,
      anthropicModel: 'claude-test-model',
      keepAliveMs: null,
    });
    // The model the config selects, with short retry waits so failure paths stay quick.
    const model = createModel(config, pino({ level: 'silent' }), { maxRetries: 2, maxRetryDelayMs: 5 });
    svc = await startService(config, { model });
  });
  afterAll(async () => {
    await svc.close();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  const streamOf = (service: RunningService, sessionId: string): Promise<SseReader> =>
    openReady(`${service.url}/timeline/stream/${sessionId}`);

  const isEvent = (type: string) => (frame: { event?: string; data: string }) =>
    frame.event === undefined && (JSON.parse(frame.data) as Ev).type === type;

  it("streams Claude's text as several AGENT_TOKEN events while it arrives, with usage at the end", async () => {
    const half = WRITER_WORDS.length / 2;
    fake.respond(
      claude('writer', () =>
        gatedReply(WRITER_WORDS.slice(0, half), WRITER_WORDS.slice(half), { delayMs: 10, ...reporting(ANSWER_USAGE) }),
      ),
    );
    const sessionId = newSessionId();
    const reader = await streamOf(svc, sessionId);
    const response = execute(svc.url, { project_id: 'p1', query: 'Write a poem about queues', session_id: sessionId });

    // The first tokens reach the browser while Claude holds back the second half of its answer.
    await reader.waitFor(isEvent('AGENT_TOKEN'), 5000, 'the first AGENT_TOKEN');
    const writerCall = await fake.request(1);
    expect(writerCall.deltasSent).toBeLessThanOrEqual(half);
    fake.release(1);

    const { status, body } = await within(response, 10000, 'the execute response');
    expect(status).toBe(200);
    expect(body.status).toBe('completed');
    await reader.ended;
    const events = timelineEvents<Ev>(reader);

    const router = events.find((e) => e.type === 'ROUTER_THOUGHT')!;
    expect(router).toMatchObject({
      agent_name: 'router',
      details: { route: 'writer', reason: 'The request suits the writer.', confidence: 0.8, usage: ROUTER_USAGE },
    });
    const tokens = events.filter((e) => e.type === 'AGENT_TOKEN');
    expect(tokens.length).toBeGreaterThanOrEqual(3);
    expect(tokens.every((e) => e.agent_name === 'writer')).toBe(true);
    const answer = WRITER_WORDS.join('');
    expect(tokens.map((e) => e.details?.text).join('')).toBe(answer);

    const total = {
      input_tokens: ROUTER_USAGE.input_tokens + ANSWER_USAGE.input_tokens,
      output_tokens: ROUTER_USAGE.output_tokens + ANSWER_USAGE.output_tokens,
    };
    expect(events.find((e) => e.type === 'AGENT_COMPLETE')?.details).toEqual({ text: answer, usage: ANSWER_USAGE });
    expect(events.at(-1)?.type).toBe('WORKFLOW_COMPLETE');
    expect(events.at(-1)?.details?.result).toEqual({ route: 'writer', answer, usage: total });
    expect(body.result).toEqual({ route: 'writer', answer, usage: total });
    expect(JSON.parse(reader.frames.find(isNamed('done'))!.data)).toEqual({
      status: 'completed',
      result: { route: 'writer', answer, usage: total },
    });

    expect(fake.requests.map((r) => r.body.model)).toEqual(['claude-test-model', 'claude-test-model']);
    expect(fake.requests[1].body.messages[0].content).toContain('Write a poem about queues');
  });

  it('runs a bounded two-agent discussion, streaming each turn and ending each with AGENT_MESSAGE', async () => {
    fake.respond(claude('discussion'));
    const sessionId = newSessionId();
    const reader = await streamOf(svc, sessionId);
    const { status } = await execute(svc.url, {
      project_id: 'p1',
      query: 'Kafka versus Redis Streams?',
      session_id: sessionId,
      params: { turns: 3 },
    });
    expect(status).toBe(200);
    await reader.ended;
    const events = timelineEvents<Ev>(reader);

    // Router, three turns, the moderator: one model call each, no more.
    expect(fake.requests).toHaveLength(5);
    const turns = events.filter((e) => e.type === 'AGENT_MESSAGE');
    expect(turns.map((e) => [e.agent_name, e.details?.turn])).toEqual([
      ['advocate', 1],
      ['critic', 2],
      ['advocate', 3],
    ]);
    for (const turn of turns) {
      expect(turn.details).toEqual({ turn: turn.details?.turn, text: WRITER_WORDS.join(''), usage: ANSWER_USAGE });
      // Each turn's tokens were streamed before its AGENT_MESSAGE.
      const before = events.filter((e) => e.seq < turn.seq && e.type === 'AGENT_TOKEN' && e.agent_name === turn.agent_name);
      expect(before.length).toBeGreaterThan(0);
    }
    expect(events.at(-1)?.type).toBe('WORKFLOW_COMPLETE');
  });

  it('529 then success: the run retries the call and completes', async () => {
    fake.enqueue(overloaded());
    fake.respond(claude('writer', () => textReply('Fine now.')));
    const response = await execute(svc.url, { project_id: 'p1', query: 'Write a note', session_id: newSessionId() });
    expect(response.status).toBe(200);
    expect(response.body.result.answer).toBe('Fine now.');
    expect(fake.requests).toHaveLength(3);
  });

  const failures: Array<[string, string, (body: MessagesBody) => Reply]> = [
    ['overloaded (529 on every try)', 'model_overloaded', () => overloaded()],
    ['rate-limited (429 on every try)', 'model_rate_limited', () => rateLimited({ 'retry-after': '30' })],
    ['an error event mid-stream', 'model_stream_error', claude('writer', () => midStreamError([' So', ' far'], 'api_error', 'Internal error'))],
    ['a connection cut mid-stream', 'model_connection_lost', claude('writer', () => cutAfter([' So', ' far']))],
    ['a request the API refuses', 'model_bad_request', () => errorReply(400, 'invalid_request_error', 'max_tokens: too large')],
  ];

  it.each(failures)('%s: WORKFLOW_ERROR, done failed with %s, and the sync POST answers 502', async (_label, code, script) => {
    fake.respond(script);
    const sessionId = newSessionId();
    const reader = await streamOf(svc, sessionId);
    const response = await within(
      postExecuteRaw(svc.url, JSON.stringify({ project_id: 'p1', query: 'Write a note', session_id: sessionId })),
      10000,
      'the execute response',
    );
    const message = expectJsonError(response, 502, 'workflow_failed');
    expect(response.json.session_id).toBe(sessionId);

    await within(reader.ended, 5000, 'the stream to end');
    const events = timelineEvents<Ev>(reader);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ type: 'WORKFLOW_ERROR', status: 'ERROR', details: { error: { code, message } } });
    const done = JSON.parse(reader.frames.filter(isNamed('done')).at(-1)!.data);
    expect(done).toEqual({ status: 'failed', error: { code, message } });
    expect(reader.frames.at(-1)?.event).toBe('done');

    const history = (await getHistory(svc.url, sessionId)).json;
    expect(history.status).toBe('failed');
    expect(history.done).toMatchObject({ status: 'failed', error: { code } });
  });

  it('a bad key: model_auth_failed, no retry, and the key appears nowhere', async () => {
    const wrongKey = 'sk-ant-not-the-right-key';
    const badConfig = { ...config, anthropicApiKey: wrongKey };
    const bad = await startService(badConfig, { model: createModel(badConfig, pino({ level: 'silent' })) });
    try {
      const sessionId = newSessionId();
      const reader = await streamOf(bad, sessionId);
      const response = await postExecuteRaw(bad.url, JSON.stringify({ project_id: 'p1', query: 'Hi', session_id: sessionId }));
      expectJsonError(response, 502, 'workflow_failed');
      await within(reader.ended, 5000, 'the stream to end');
      expect(JSON.parse(reader.frames.find(isNamed('done'))!.data).error.code).toBe('model_auth_failed');
      expect(timelineEvents<Ev>(reader).at(-1)?.type).toBe('WORKFLOW_ERROR');
      expect(fake.requests).toHaveLength(1);
      expect(response.text + reader.raw).not.toContain(wrongKey);
    } finally {
      await bad.close();
    }
  });

  it("keeps the provider's error text (an internal org id) out of every answer, and in the log", async () => {
    const ORG = 'org-7Hq2xSecretOrg';
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _encoding, done) => done(void lines.push(chunk.toString())) }));
    const leaky = await startService(config, { log, model: createModel(config, log, { maxRetries: 0 }) });
    const provided: Array<[string, (body: MessagesBody) => Reply]> = [
      ['model_auth_failed', () => errorReply(403, 'permission_error', `Organization ${ORG} may not use this model`)],
      ['model_bad_request', () => errorReply(400, 'invalid_request_error', `${ORG}: prompt is too long for your tier`)],
      ['model_unavailable', () => errorReply(500, 'api_error', `shard for ${ORG} is down`)],
      ['model_stream_error', claude('writer', () => midStreamError([' So'], 'api_error', `quota of ${ORG} exhausted`))],
    ];
    try {
      for (const [code, script] of provided) {
        fake.reset();
        fake.respond(script);
        const sessionId = newSessionId();
        const reader = await streamOf(leaky, sessionId);
        const response = await postExecuteRaw(leaky.url, JSON.stringify({ project_id: 'p1', query: 'Hi', session_id: sessionId }));
        expectJsonError(response, 502, 'workflow_failed');
        await within(reader.ended, 5000, 'the stream to end');
        expect(JSON.parse(reader.frames.find(isNamed('done'))!.data).error.code).toBe(code);
        const history = await getHistory(leaky.url, sessionId);
        for (const answer of [response.text, reader.raw, history.text]) expect({ code, leaked: answer.includes(ORG) }).toEqual({ code, leaked: false });
      }
      const logged = lines.filter((line) => line.includes(ORG)).map((line) => JSON.parse(line) as { msg: string; provider_detail?: string });
      expect(logged.filter((line) => line.msg === 'model call failed' && line.provider_detail?.includes(ORG))).toHaveLength(provided.length);
    } finally {
      await leaky.close();
    }
  });

  it('cancel stops the model call at once: the upstream request closes and done is cancelled', async () => {
    fake.respond(claude('writer', () => hangAfter([' A', ' long', ' answer'])));
    const sessionId = newSessionId();
    const reader = await streamOf(svc, sessionId);
    const pending = execute(svc.url, { project_id: 'p1', query: 'Write a saga', session_id: sessionId });
    await reader.waitFor(isEvent('AGENT_TOKEN'), 5000, 'the first AGENT_TOKEN');
    const writerCall = await fake.request(1);

    expect((await cancelSession(svc.url, sessionId)).status).toBe(202);
    await within(writerCall.closed, 2000, 'the upstream request to close');
    expect(writerCall.closedByClient).toBe(true);

    const response = await within(pending, 5000, 'the execute response');
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('cancelled');
    await within(reader.ended, 5000, 'the stream to end');
    expect(timelineEvents<Ev>(reader).at(-1)?.type).toBe('WORKFLOW_CANCELLED');
    expect(JSON.parse(reader.frames.find(isNamed('done'))!.data)).toEqual({ status: 'cancelled' });
    expect(fake.requests).toHaveLength(2);
  });

  describe('createService picks the model from the config', () => {
    it('with ANTHROPIC_API_KEY set, runs go to Claude (ANTHROPIC_BASE_URL, ANTHROPIC_MODEL)', async () => {
      fake.respond(claude('writer', () => textReply('From the configured Claude.')));
      // No model part: the service builds its own from the config.
      const own = await startService(config, { model: undefined });
      try {
        const response = await execute(own.url, { project_id: 'p1', query: 'Write hi', session_id: newSessionId() });
        expect(response.status).toBe(200);
        expect(response.body.result.answer).toBe('From the configured Claude.');
        expect(fake.requests.map((r) => [r.body.model, r.headers.authorization])).toEqual([
          ['claude-test-model', `Bearer ${fake.apiKey}`],
          ['claude-test-model', `Bearer ${fake.apiKey}`],
        ]);
      } finally {
        await own.close();
      }
    });

    it('without a key, runs use the offline scripted model and never call out', async () => {
      const offline = await startService({ ...config, anthropicApiKey: null }, { model: undefined });
      try {
        const response = await execute(offline.url, {
          project_id: 'p1',
          query: 'Write hi',
          session_id: newSessionId(),
          params: { route: 'writer' },
        });
        expect(response.status).toBe(200);
        expect(response.body.result.answer).toContain('Write hi');
        expect(fake.requests).toHaveLength(0);
      } finally {
        await offline.close();
      }
    });
  });
});
