import express from 'express';
import request from 'supertest';
import { z } from 'zod';
import { parseTimeline } from '../../client-sdk/src';
import { ConfigError, createService, DEFAULT_CONFIG, defineWorkflow, type Config } from '../../server';
import { createTestService } from '../helpers/service';

/** The service as integrators use it: `createService(options)` and `defineWorkflow`, through supertest. */

const echo = defineWorkflow({
  name: 'echo',
  async run(input, ctx) {
    await ctx.emit({ type: 'AGENT_MESSAGE', status: 'SUCCESS', message: input.query, details: { params: input.params } });
    return { params: input.params, context: input.context };
  },
});

const runBody = (workflow: string, extra: Record<string, unknown> = {}) => ({ project_id: 'p', query: 'hello', workflow, ...extra });

/** What `createService({ config })` throws for `config`. */
function configError(config: Record<string, unknown>): ConfigError {
  try {
    createService({ config: config as Partial<Config> });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`createService accepted ${JSON.stringify(config)}`);
}

describe('createService', () => {
  describe('without options', () => {
    const HOSTILE: Record<string, string> = {
      PORT: 'not-a-port',
      REDIS_URL: 'redis://127.0.0.1:1',
      API_KEY: 'from-the-environment',
      JWT_SECRET: 'from-the-environment',
      KEEPALIVE_MS: '-5',
      MAX_RUNS: '0',
      CORS_ORIGINS: 'https://evil.example',
      LOG_LEVEL: 'bogus',
      ANTHROPIC_API_KEY: 'sk-ant-from-the-environment',
    };
    const saved: Record<string, string | undefined> = {};
    beforeAll(() => {
      for (const [name, value] of Object.entries(HOSTILE)) {
        saved[name] = process.env[name];
        process.env[name] = value;
      }
    });
    afterAll(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });

    it('runs on the embedded defaults and reads no environment variable (these would all break it)', async () => {
      const service = createService();
      try {
        expect(service.config).toEqual(DEFAULT_CONFIG);
        // No auth, no CORS, the in-memory bus and the offline model, whatever the environment says:
        // the origin the environment allows is refused like any other site.
        const body = { project_id: 'p', query: 'Write a haiku', params: { route: 'writer' } };
        const crossSite = await request(service.app).post('/execute').set('Origin', 'https://evil.example').send(body).expect(403);
        expect(crossSite.headers['access-control-allow-origin']).toBeUndefined();
        expect(crossSite.body.error.code).toBe('origin_not_allowed');
        const run = await request(service.app).post('/execute').send(body).expect(200);
        expect(run.body.status).toBe('completed');
        await request(service.app).get('/readyz').expect(200);
      } finally {
        await service.close();
      }
    });
  });

  describe('options.config', () => {
    it('overrides single settings and keeps the other defaults', () => {
      const service = createTestService({ maxRuns: 3, corsOrigins: ['https://app.example'], keepAliveMs: null, bodyLimitBytes: 2048 });
      expect(service.config).toEqual({
        ...DEFAULT_CONFIG,
        logLevel: 'silent',
        shutdownGraceMs: 2000,
        enableSynthetic: true,
        maxRuns: 3,
        corsOrigins: ['https://app.example'],
        keepAliveMs: null,
        bodyLimitBytes: 2048,
      });
      return service.close();
    });

    it.each<[Record<string, unknown>, RegExp]>([
      [{ keepAliveMs: -1 }, /^config\.keepAliveMs \(KEEPALIVE_MS\): expected a whole number, got "-1"$/],
      [{ maxRuns: 0 }, /^config\.maxRuns \(MAX_RUNS\): must be greater than 0$/],
      [{ maxRuns: null }, /^config\.maxRuns \(MAX_RUNS\): must be greater than 0$/],
      [{ retryMs: 1.5 }, /^config\.retryMs \(RETRY_MS\): expected a whole number/],
      [{ port: 70000 }, /^config\.port \(PORT\): 70000 is not a TCP port$/],
      [{ port: '3000' }, /^config\.port \(PORT\): expected a number or null, got "3000"$/],
      [{ bodyLimitBytes: 0 }, /^config\.bodyLimitBytes \(BODY_LIMIT\): expected a positive size/],
      [{ redisUrl: 'not a url' }, /^config\.redisUrl \(REDIS_URL\): "not a url" is not a URL$/],
      [{ corsOrigins: ['app.example'] }, /^config\.corsOrigins \(CORS_ORIGINS\): "app.example" is not an origin/],
      [{ corsOrigins: 'https://app.example' }, /^config\.corsOrigins \(CORS_ORIGINS\): expected an array of strings or null/],
      [{ logLevel: 'loud' }, /^config\.logLevel \(LOG_LEVEL\): expected one of fatal, error, warn, info, debug, trace, silent, got "loud"$/],
      [{ keepAlive: 1000 }, /^config\.keepAlive: unknown setting \(known: port, metricsPort, redisUrl, /],
    ])('refuses %j with a ConfigError naming the setting and its variable', (config, message) => {
      expect(configError(config).message).toMatch(message);
    });

    it('takes null as "off" where zero is off, and as "unset" for optional strings', () => {
      const service = createTestService({ keepAliveMs: null, streamIdleTimeoutMs: null, apiKey: null, redisUrl: null });
      expect(service.config).toMatchObject({ keepAliveMs: null, streamIdleTimeoutMs: null, apiKey: null, redisUrl: null });
      return service.close();
    });
  });

  describe('options.workflows', () => {
    it('adds workflows beside the built-in ones; an unknown name lists them all', async () => {
      const service = createTestService({}, { workflows: [echo] });
      try {
        const run = await request(service.app).post('/execute').send(runBody('echo', { params: { any: ['json', 1] } })).expect(200);
        expect(run.body.result).toEqual({ params: { any: ['json', 1] }, context: [] });
        const unknown = await request(service.app).post('/execute').send(runBody('nope')).expect(400);
        expect(unknown.body.error).toEqual({
          code: 'invalid_request',
          message: 'workflow: unknown workflow "nope" (registered: agents, synthetic, echo)',
        });
      } finally {
        await service.close();
      }
    });

    it('refuses a name that is taken, a built-in one included', () => {
      const named = (name: string) => defineWorkflow({ name, run: () => null });
      expect(() => createService({ workflows: [named('agents')] })).toThrow(
        'A workflow named "agents" is already registered (registered: agents); give it another name',
      );
      expect(() => createService({ workflows: [named('mine'), named('mine')] })).toThrow('A workflow named "mine" is already registered');
      expect(() => createService({ workflows: [{ name: 'raw' } as never] })).toThrow(/make it with defineWorkflow/);
    });
  });

  it('mounts under a prefix: routes and stream_url follow it', async () => {
    const service = createTestService({}, { workflows: [echo] });
    const host = express().use('/timeline-api', service.app);
    try {
      const accepted = await request(host).post('/timeline-api/execute').set('Prefer', 'respond-async').send(runBody('echo')).expect(202);
      expect(accepted.body.stream_url).toBe(`/timeline-api/timeline/stream/${accepted.body.session_id}`);
      const stream = await request(host).get(accepted.body.stream_url).expect(200);
      expect(parseTimeline(stream.text).done).toMatchObject({ status: 'completed' });
    } finally {
      await service.close();
    }
  });

  it('listens on a port of its own and closes gracefully (twice is once)', async () => {
    const service = createTestService();
    const port = await service.listen(0);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    const closed = service.close();
    expect(service.close()).toBe(closed);
    await closed;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

describe('defineWorkflow', () => {
  const counter = defineWorkflow({
    name: 'counter',
    description: 'Counts to params.to',
    params: z.strictObject({ to: z.int().min(1).max(5), label: z.string().default('n') }),
    async run({ params }, ctx) {
      for (let n = 1; n <= params.to; n++) {
        await ctx.emit({ type: 'AGENT_MESSAGE', status: 'IN_PROGRESS', message: `${params.label}=${n}`, agent_name: 'counter' });
      }
      return { counted: params.to };
    },
  });
  const sloppy = defineWorkflow({
    name: 'sloppy',
    async run(_input, ctx) {
      await ctx.emit({ type: 'AGENT_MESSAGE', status: 'SUCCESS', message: 'fine' });
      await ctx.emit({ type: 'THOUGHT', status: 'SUCCESS', message: 'not a type of the event model' } as never);
      return 'unreachable';
    },
  });

  let service: ReturnType<typeof createTestService>;
  beforeAll(() => {
    service = createTestService({}, { workflows: [counter, sloppy] });
  });
  afterAll(() => service.close());

  it("checks params with the workflow's schema (defaults applied) and returns the run's result", async () => {
    const run = await request(service.app).post('/execute').send(runBody('counter', { params: { to: 3 } })).expect(200);
    expect(run.body).toMatchObject({ status: 'completed', result: { counted: 3 }, event_count: 5 });
    const stream = await request(service.app).get(`/timeline/stream/${run.body.session_id}`).expect(200);
    const { events, done } = parseTimeline(stream.text);
    expect(events.map((event) => event.message)).toEqual(['Workflow counter started', 'n=1', 'n=2', 'n=3', 'Workflow counter completed']);
    expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(done).toEqual({ id: expect.any(String), status: 'completed', result: { counted: 3 } });
  });

  it.each<[unknown, RegExp]>([
    [{ to: 6 }, /^params\.to: /],
    [{ to: 'three' }, /^params\.to: /],
    [{}, /^params\.to: /],
    [{ to: 1, extra: true }, /^unknown field params\.extra$/],
  ])('answers 400 invalid_request naming the field for params %j', async (params, message) => {
    const refused = await request(service.app).post('/execute').send(runBody('counter', { params })).expect(400);
    expect(refused.body.error.code).toBe('invalid_request');
    expect(refused.body.error.message).toMatch(message);
  });

  it('fails the run (internal_error, WORKFLOW_ERROR, done failed) when a step is not of the event model', async () => {
    const run = await request(service.app).post('/execute').send(runBody('sloppy')).expect(500);
    expect(run.body.error.code).toBe('internal_error');
    const history = await request(service.app).get(`/timeline/${run.body.session_id}`).expect(200);
    expect(history.body.events.map((event: { type: string }) => event.type)).toEqual(['WORKFLOW_START', 'AGENT_MESSAGE', 'WORKFLOW_ERROR']);
    expect(history.body.done).toMatchObject({ status: 'failed', error: { code: 'internal_error' } });
  });

  it('refuses a definition without a usable name, run or params schema', () => {
    expect(() => defineWorkflow({ name: '', run: () => null })).toThrow(/name must be a string of 1 to 128 characters/);
    expect(() => defineWorkflow({ name: 'x'.repeat(129), run: () => null })).toThrow(/name must be/);
    expect(() => defineWorkflow({ name: 'norun' } as never)).toThrow(/run must be a function/);
    expect(() => defineWorkflow({ name: 'badparams', params: {} as never, run: () => null })).toThrow(/params must be a zod schema/);
  });
});
