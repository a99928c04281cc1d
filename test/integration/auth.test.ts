import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { TimelineClient } from '../../client-sdk/src';
import type { Config } from '../../server/config';
import type { TimelineBus } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import request, { type Response } from 'supertest';
import { expectJsonError } from '../helpers/api';
import { capturedLog } from '../helpers/log-capture';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { settle } from '../helpers/sdk-run';
import { newSessionId, startRedisService, startService, synthetic, type RunningService } from '../helpers/service';
import { isNamed, openReady, openSse, timelineEvents } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';

const API_KEY = 'sekrit-api-key-0123456789';
const JWT_SECRET = 'sekrit-jwt-secret-9876543210';
const nowS = () => Math.floor(Date.now() / 1000);

/** An HS256 token for `sub` with a 5-minute `exp`; `claims` and `options` override. */
function token(sub: unknown = 'alice', claims: Record<string, unknown> = {}, options: jwt.SignOptions = {}, secret = JWT_SECRET) {
  return jwt.sign({ sub, ...claims }, secret, { algorithm: 'HS256', expiresIn: 300, ...options });
}

const bearer = (credential: string): Record<string, string> => ({ Authorization: `Bearer ${credential}` });
const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** `POST /execute` on `svc`'s app: `body` as JSON (a string is sent as it is). */
const post = (svc: RunningService, body: unknown, headers: Record<string, string> = {}) =>
  request(svc.service.app).post('/execute').type('json').set(headers).send(typeof body === 'string' ? body : JSON.stringify(body));

/** `POST /timeline/:id/cancel` on `svc`'s app (JSON, as every POST must be; no body). */
const cancelOn = (svc: RunningService, sessionId: string, headers: Record<string, string> = {}) =>
  request(svc.service.app).post(`/timeline/${sessionId}/cancel`).type('json').set(headers);

/** A stream request answered with an error: its status and parsed JSON body (a 200 is cut at once). */
async function streamAnswer(url: string, headers: Record<string, string> = {}) {
  const reader = await openSse(url, { headers });
  if (reader.status === 200) {
    reader.destroy();
    return { status: 200, headers: reader.headers, body: undefined as any, text: '' };
  }
  await reader.ended;
  return { status: reader.status, headers: reader.headers, body: reader.raw ? JSON.parse(reader.raw) : undefined, text: reader.raw };
}

function expectUnauthorized(response: Response): void {
  expectJsonError(response, 401, 'unauthorized');
  expect(response.headers['www-authenticate']).toBe('Bearer');
}

describe('API_KEY', () => {
  let svc: RunningService;
  const logs = capturedLog();

  beforeAll(async () => {
    svc = await startService({ apiKey: API_KEY, keepAliveMs: null }, { log: logs.log });
  });
  afterAll(() => svc.close());

  /** Every protected route, each as a request with the given headers. */
  const protectedRequests = (sessionId: string, headers: Record<string, string>) => [
    request(svc.service.app).get(`/timeline/stream/${sessionId}`).set(headers),
    post(svc, synthetic(sessionId, { events: 1 }), headers),
    request(svc.service.app).get(`/timeline/${sessionId}`).set(headers),
    cancelOn(svc, sessionId, headers),
    request(svc.service.app).get('/no/such/route').set(headers),
    request(svc.service.app).delete('/execute').set(headers),
    request(svc.service.app).post('/').set(headers),
  ];

  it('lets the key through on every route: run, stream, history, cancel', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`, { headers: bearer(API_KEY) });
    const run = await post(svc, synthetic(sessionId, { events: 3 }), bearer(API_KEY));
    expect(run.status).toBe(200);
    await reader.waitFor(isNamed('done'));
    expect(seqs(timelineEvents<{ seq: number }>(reader))).toEqual(range(1, 5));
    const history = await request(svc.service.app).get(`/timeline/${sessionId}`).set(bearer(API_KEY));
    expect(history.status).toBe(200);
    expect(history.body.done.status).toBe('completed');
    const cancel = await cancelOn(svc, sessionId, bearer(API_KEY));
    expectJsonError(cancel, 409, 'session_finished');
    // The scheme is case-insensitive (RFC 9110).
    expect((await request(svc.service.app).get(`/timeline/${sessionId}`).set({ Authorization: `bearer ${API_KEY}` })).status).toBe(200);
  });

  it('answers one constant 401 unauthorized with WWW-Authenticate: Bearer to a missing, wrong or malformed credential', async () => {
    const sessionId = newSessionId();
    const credentials: Array<Record<string, string>> = [
      {},
      bearer('wrong'),
      bearer(`${API_KEY}x`),
      bearer(API_KEY.slice(0, -1)),
      bearer(API_KEY.toUpperCase()),
      { Authorization: `Basic ${Buffer.from(`user:${API_KEY}`).toString('base64')}` },
      { Authorization: API_KEY },
      { Authorization: 'Bearer' },
      { Authorization: `Bearer ${API_KEY} extra` },
      { 'X-Api-Key': API_KEY },
    ];
    const bodies = new Set<string>();
    for (const headers of credentials) {
      for (const response of await Promise.all(protectedRequests(sessionId, headers))) {
        expectUnauthorized(response);
        bodies.add(response.text);
      }
    }
    // The same body whatever was wrong: a prober learns nothing about the key.
    expect([...bodies]).toEqual(['{"error":{"code":"unauthorized","message":"Missing or invalid bearer credentials"}}']);
    // None of them started anything.
    expectJsonError(await request(svc.service.app).get(`/timeline/${sessionId}`).set(bearer(API_KEY)), 404, 'session_not_found');
  });

  it('leaves /healthz, /readyz, /metrics, GET / and /assets/* open, even with a bad credential', async () => {
    for (const headers of [{}, bearer('wrong')]) {
      expect((await request(svc.service.app).get('/healthz').set(headers)).status).toBe(200);
      expect((await request(svc.service.app).get('/readyz').set(headers)).status).toBe(200);
      const metrics = await request(svc.service.app).get('/metrics').set(headers);
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain('timeline_streams_open');
      const page = await request(svc.service.app).get('/').set(headers);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect((await request(svc.service.app).head('/').set(headers)).status).toBe(200);
      // The page's files need no credentials either (a file not built yet is a 404, never a 401).
      const assets = [...new Set((page.text.match(/assets\/[\w.-]+/g) ?? []).map((file) => `/${file}`))];
      expect(assets.length).toBeGreaterThan(0);
      for (const asset of [...assets, '/assets/no-such-file.js']) {
        const response = await request(svc.service.app).get(asset).set(headers);
        expect({ asset, status: response.status }).not.toEqual({ asset, status: 401 });
      }
      expect((await request(svc.service.app).get('/assets/no-such-file.js').set(headers)).status).toBe(404);
    }
  });

  it('refuses the long-lived key as ?access_token= (it belongs in the Authorization header only)', async () => {
    const sessionId = newSessionId();
    expectUnauthorized(await request(svc.service.app).get(`/timeline/stream/${sessionId}?access_token=${API_KEY}`));
    expectUnauthorized(await request(svc.service.app).get(`/timeline/stream/${sessionId}?lastEventId=1-0&access_token=${API_KEY}`));
    // By header, the same key opens the same stream.
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`, { headers: bearer(API_KEY) });
    reader.destroy();
  });

  it('never logs a credential, even at trace level and on errors', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`, { headers: bearer(API_KEY) });
    expect((await post(svc, synthetic(sessionId, { events: 2 }), bearer(API_KEY))).status).toBe(200);
    await reader.ended;
    const cut = await openReady(`${svc.url}/timeline/stream/${newSessionId()}`, { headers: bearer(API_KEY) });
    cut.destroy();
    const wrong = 'sekrit-wrong-token';
    const attempts = [
      request(svc.service.app).get(`/timeline/stream/${newSessionId()}?access_token=${wrong}`),
      request(svc.service.app).get(`/timeline/stream/not-a-uuid?access_token=${API_KEY}`),
      request(svc.service.app).get(`/timeline/stream/${newSessionId()}?access_token=${API_KEY}&lastEventId=zzz`),
      request(svc.service.app).get(`/timeline/stream/%E0%A4%A?access_token=${API_KEY}`),
      request(svc.service.app).get(`/timeline/${sessionId}?access_token=${API_KEY}`),
      request(svc.service.app).get(`/no/such/route?access_token=${API_KEY}`),
      request(svc.service.app).get(`/timeline/${sessionId}`).set(bearer(wrong)),
      post(svc, '{"project_id":', bearer(API_KEY)),
    ];
    for (const response of await Promise.all(attempts)) expect(response.status).toBeGreaterThanOrEqual(400);

    // The service did log about these requests, so the check below is not vacuous.
    await new Promise((resolve) => setImmediate(resolve));
    const entries = logs.lines.map((line) => JSON.parse(line) as { msg: string; session_id?: string });
    expect(entries.some((entry) => entry.msg === 'run finished' && entry.session_id === sessionId)).toBe(true);
    expect(entries.some((entry) => entry.msg === 'stream closed')).toBe(true);
    expect(entries.filter((entry) => entry.msg === 'unauthorized request').length).toBeGreaterThanOrEqual(4);
    expect(logs.text()).not.toContain('sekrit');
  });

  it('works with the SDK (headers as an object or a function); a bad key rejects with TimelineError unauthorized', async () => {
    let calls = 0;
    const clients = [
      new TimelineClient({ baseUrl: svc.url, headers: bearer(API_KEY) }),
      new TimelineClient({ baseUrl: svc.url, headers: () => ((calls += 1), bearer(API_KEY)) }),
    ];
    for (const client of clients) {
      const run = client.execute({ project_id: 'p', query: 'q', workflow: 'synthetic', params: { events: 3 } });
      expect(await settle(run)).toEqual({ result: { events: 3 } });
    }
    expect(calls).toBeGreaterThanOrEqual(2); // the stream and the POST each asked for headers

    const refused = new TimelineClient({ baseUrl: svc.url, headers: bearer('wrong') });
    const { error } = await settle(refused.execute({ project_id: 'p', query: 'q', workflow: 'synthetic', params: { events: 1 } }));
    expect(error).toMatchObject({ name: 'TimelineError', code: 'unauthorized', status: 401 });
  });
});

describe('JWT_SECRET', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ jwtSecret: JWT_SECRET, keepAliveMs: null });
  });
  afterAll(() => svc.close());

  const historyWith = (credential: string, sessionId = newSessionId()) =>
    request(svc.service.app).get(`/timeline/${sessionId}`).set(bearer(credential));

  it('accepts a valid HS256 token, by header and as ?access_token= on the stream', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}?access_token=${token()}`);
    expect((await post(svc, synthetic(sessionId, { events: 2 }), bearer(token()))).status).toBe(200);
    await reader.waitFor(isNamed('done'));
    expect((await historyWith(token(), sessionId)).status).toBe(200);
  });

  it('takes ?access_token= on the stream route only, with ?lastEventId= beside it', async () => {
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}?access_token=${token()}`);
    expect((await post(svc, synthetic(sessionId, { events: 3 }), bearer(token()))).status).toBe(200);
    const done = await reader.waitFor(isNamed('done'));
    const first = timelineEvents<{ event_id: string }>(reader)[0].event_id;

    const resumed = await openReady(`${svc.url}/timeline/stream/${sessionId}?access_token=${token()}&lastEventId=${first}`);
    await resumed.waitFor(isNamed('done'));
    expect(seqs(timelineEvents<{ seq: number }>(resumed))).toEqual(range(2, 5));
    const finished = await openSse(`${svc.url}/timeline/stream/${sessionId}?lastEventId=${done.id}&access_token=${token()}`);
    expect(finished.status).toBe(204);

    expectUnauthorized(await request(svc.service.app).get(`/timeline/stream/${sessionId}?access_token=wrong`));
    // A header, when sent, is the credential: a good query token does not rescue a bad one.
    expectUnauthorized(await request(svc.service.app).get(`/timeline/stream/${sessionId}?access_token=${token()}`).set(bearer('wrong')));
    expectUnauthorized(await request(svc.service.app).get(`/timeline/${sessionId}?access_token=${token()}`));
    expectUnauthorized(await request(svc.service.app).post(`/timeline/${sessionId}/cancel?access_token=${token()}`).type('json'));
    expectUnauthorized(
      await request(svc.service.app).post(`/execute?access_token=${token()}`).send(synthetic(newSessionId(), { events: 1 })),
    );
  });

  it('refuses expired, not yet valid, exp-less, unsigned, other-algorithm and wrongly signed tokens', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const bad: Record<string, string> = {
      expired: jwt.sign({ sub: 'alice', exp: nowS() - 60 }, JWT_SECRET, { algorithm: 'HS256' }),
      'not yet valid': token('alice', {}, { notBefore: 120 }),
      'without exp': jwt.sign({ sub: 'alice' }, JWT_SECRET, { algorithm: 'HS256' }),
      'alg none': `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'alice', exp: nowS() + 300 })}.`,
      'alg none, signature kept': `${base64url({ alg: 'none', typ: 'JWT' })}.${token().split('.').slice(1).join('.')}`,
      HS512: token('alice', {}, { algorithm: 'HS512' }),
      RS256: jwt.sign({ sub: 'alice' }, privateKey, { algorithm: 'RS256', expiresIn: 300 }),
      'wrong secret': token('alice', {}, {}, 'another-secret'),
      'tampered payload': (() => {
        const [head, , signature] = token().split('.');
        return `${head}.${base64url({ sub: 'mallory', exp: nowS() + 300 })}.${signature}`;
      })(),
      'not a JWT': 'abc.def',
      'the secret itself': JWT_SECRET,
    };
    for (const [label, credential] of Object.entries(bad)) {
      const response = await historyWith(credential);
      expect({ label, status: response.status }).toEqual({ label, status: 401 });
      expectUnauthorized(response);
    }
    // The control: the same route with a good token is not refused.
    expect((await historyWith(token())).status).toBe(404);
  });

  it('refuses a token without a usable sub, and one naming the API key caller', async () => {
    const subs: unknown[] = [undefined, '', 42, 'api-key'];
    for (const sub of subs) {
      const credential = sub === undefined ? jwt.sign({}, JWT_SECRET, { algorithm: 'HS256', expiresIn: 300 }) : token(sub);
      expectUnauthorized(await historyWith(credential));
    }
  });

  it('has no API key: a bearer that is not a token is refused', async () => {
    expectUnauthorized(await historyWith(API_KEY));
  });
});

describe('API_KEY and JWT_SECRET both set', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ apiKey: API_KEY, jwtSecret: JWT_SECRET, keepAliveMs: null });
  });
  afterAll(() => svc.close());

  it('accepts either; the key is one caller (api-key), apart from every token subject', async () => {
    const keySession = newSessionId();
    expect((await post(svc, synthetic(keySession, { events: 1 }), bearer(API_KEY))).status).toBe(200);
    const aliceSession = newSessionId();
    expect((await post(svc, synthetic(aliceSession, { events: 1 }), bearer(token('alice')))).status).toBe(200);

    const history = (sessionId: string, credential: string) =>
      request(svc.service.app).get(`/timeline/${sessionId}`).set(bearer(credential));
    expect((await history(keySession, API_KEY)).status).toBe(200);
    expectJsonError(await history(keySession, token('alice')), 404, 'session_not_found');
    expect((await history(aliceSession, token('alice'))).status).toBe(200);
    expectJsonError(await history(aliceSession, API_KEY), 404, 'session_not_found');
    expectJsonError(await history(aliceSession, token('bob')), 404, 'session_not_found');
    expectUnauthorized(await history(keySession, token('api-key')));
  });

  it('takes a token as ?access_token=, but never the shared key', async () => {
    const keySession = newSessionId();
    expect((await post(svc, synthetic(keySession, { events: 1 }), bearer(API_KEY))).status).toBe(200);
    expectUnauthorized(await request(svc.service.app).get(`/timeline/stream/${keySession}?access_token=${API_KEY}`));
    const aliceSession = newSessionId();
    expect((await post(svc, synthetic(aliceSession, { events: 1 }), bearer(token('alice')))).status).toBe(200);
    const replay = await openSse(`${svc.url}/timeline/stream/${aliceSession}?access_token=${token('alice')}`);
    await replay.waitFor(isNamed('done'));
    expect(replay.status).toBe(200);
  });
});

/**
 * Session binding, on one instance of the memory bus and on two instances sharing a real
 * Redis: A and B are two callers, `a` and `b` the instances (the same one on the memory bus).
 */
function describeBinding(name: string, start: (overrides: Partial<Config>) => Promise<[RunningService, RunningService]>) {
  describe(`session binding (${name})`, () => {
    let a: RunningService;
    let b: RunningService;
    const A = () => bearer(token('alice'));
    const B = () => bearer(token('bob'));

    beforeAll(async () => {
      [a, b] = await start({ jwtSecret: JWT_SECRET, apiKey: API_KEY, keepAliveMs: null });
    });
    afterAll(async () => {
      await Promise.all([...new Set([a, b])].map((svc) => svc?.close()));
    });

    const streamUrl = (svc: RunningService, sessionId: string) => `${svc.url}/timeline/stream/${sessionId}`;
    const history = (svc: RunningService, sessionId: string, headers: Record<string, string>) =>
      request(svc.service.app).get(`/timeline/${sessionId}`).set(headers);
    const cancel = cancelOn;
    const runAsync = (
      svc: RunningService,
      sessionId: string | undefined,
      headers: Record<string, string>,
      params: Record<string, unknown> = { events: 1 },
    ) =>
      post(svc, synthetic(sessionId, params), { Prefer: 'respond-async', ...headers });

    /** The 404 a session never seen gets, with its id taken out: what another caller must get too. */
    async function unseenBody(svc: RunningService): Promise<string> {
      const unseen = newSessionId();
      const response = await history(svc, unseen, B());
      expectJsonError(response, 404, 'session_not_found');
      return response.text.replace(unseen, '<id>');
    }

    it("makes a session streamed first A's: B gets 404 session_not_found for its stream, history, execute and cancel", async () => {
      const sessionId = newSessionId();
      const reader = await openReady(streamUrl(a, sessionId), { headers: A() });
      const notFound = await unseenBody(b);

      const bStream = await streamAnswer(streamUrl(b, sessionId), B());
      expect({ status: bStream.status, code: bStream.body?.error?.code }).toEqual({ status: 404, code: 'session_not_found' });
      expect(bStream.text.replace(sessionId, '<id>')).toBe(notFound);
      const bRun = await runAsync(b, sessionId, B());
      expectJsonError(bRun, 404, 'session_not_found');
      expect(bRun.text.replace(sessionId, '<id>')).toBe(notFound);

      expect((await runAsync(b, sessionId, A(), { events: 20, interval_ms: 25 })).status).toBe(202);
      // The run is going now: B can neither see nor stop it.
      for (const response of [await cancel(a, sessionId, B()), await cancel(b, sessionId, B()), await history(b, sessionId, B())]) {
        expectJsonError(response, 404, 'session_not_found');
        expect(response.text.replace(sessionId, '<id>')).toBe(notFound);
      }
      const done = await reader.waitFor(isNamed('done'), 15000);
      expect(JSON.parse(done.data).status).toBe('completed');

      expect((await history(b, sessionId, A())).body.done.status).toBe('completed');
      expectJsonError(await history(a, sessionId, B()), 404, 'session_not_found');
      // Not the 204 the owner would get: a finished session is not revealed either.
      const bResume = await streamAnswer(streamUrl(a, sessionId), { ...B(), 'Last-Event-ID': done.id! });
      expect(bResume.status).toBe(404);
      expect((await openSse(streamUrl(b, sessionId), { headers: { ...A(), 'Last-Event-ID': done.id! } })).status).toBe(204);
    });

    it("makes a session executed first A's, including one whose id the server made", async () => {
      const sessionId = newSessionId();
      expect((await post(a, synthetic(sessionId, { events: 1 }), A())).status).toBe(200);
      expectJsonError(await history(b, sessionId, B()), 404, 'session_not_found');
      expect((await history(b, sessionId, A())).status).toBe(200);

      const made = await post(b, synthetic(undefined, { events: 1 }), A());
      expect(made.status).toBe(200);
      expectJsonError(await history(a, made.body.session_id, B()), 404, 'session_not_found');
      expect((await streamAnswer(streamUrl(a, made.body.session_id), B())).status).toBe(404);
      expect((await history(a, made.body.session_id, A())).status).toBe(200);
    });

    it('never binds on history or cancel: a stranger answered 404 first does not take the session', async () => {
      const sessionId = newSessionId();
      const notFound = await unseenBody(b);
      for (const response of [await history(a, sessionId, B()), await cancel(b, sessionId, B()), await history(b, sessionId, B())]) {
        expectJsonError(response, 404, 'session_not_found');
        expect(response.text.replace(sessionId, '<id>')).toBe(notFound);
      }
      // A, who really makes the session, streams and runs it as if B had never asked.
      const reader = await openReady(streamUrl(b, sessionId), { headers: A() });
      expect((await runAsync(a, sessionId, A())).status).toBe(202);
      expect(JSON.parse((await reader.waitFor(isNamed('done'), 15000)).data).status).toBe('completed');
      expectJsonError(await history(a, sessionId, B()), 404, 'session_not_found');
      expect((await history(b, sessionId, A())).status).toBe(200);

      // The same for a run started with no stream first.
      const direct = newSessionId();
      expectJsonError(await cancel(a, direct, B()), 404, 'session_not_found');
      expect((await post(b, synthetic(direct, { events: 1 }), A())).status).toBe(200);
      expect((await history(a, direct, A())).body.done.status).toBe('completed');
    });

    it('binds exactly one caller when two touch a session first at the same time', async () => {
      for (let i = 0; i < 8; i++) {
        // A streams on one instance while B starts a run on the other.
        const raced = newSessionId();
        const [stream, run] = await Promise.all([streamAnswer(streamUrl(a, raced), A()), runAsync(b, raced, B())]);
        const winners = [stream.status === 200, run.status === 202];
        expect(winners.filter(Boolean)).toHaveLength(1);
        expect(stream.status === 200 ? run.status : stream.status).toBe(404);

        // Both start a run, one on each instance.
        const both = newSessionId();
        const runs = await Promise.all([runAsync(a, both, A()), runAsync(b, both, B())]);
        expect(runs.map((response) => response.status).sort()).toEqual([202, 404]);
        const owner = runs[0].status === 202 ? A() : B();
        const other = runs[0].status === 202 ? B() : A();
        expect((await history(a, both, other)).status).toBe(404);
        expect((await history(b, both, owner)).status).toBe(200);
      }
    });

    it('bindCaller: concurrent first touches by ten callers through both buses bind exactly one', async () => {
      const buses: TimelineBus[] = [a.service.bus, b.service.bus];
      const sessionId = newSessionId();
      const callers = range(0, 9).map((n) => `caller-${n}`);
      const bound = await Promise.all(callers.map((caller, n) => buses[n % 2].bindCaller(sessionId, caller)));
      expect(bound.filter(Boolean)).toHaveLength(1);
      const winner = callers[bound.indexOf(true)];
      expect(await buses[1].bindCaller(sessionId, winner)).toBe(true);
      expect(await buses[0].bindCaller(sessionId, callers.find((caller) => caller !== winner)!)).toBe(false);
    });
  });
}

describeBinding('memory bus', async (overrides) => {
  const svc = await startService(overrides);
  return [svc, svc];
});

describe('on Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(() => redis?.stop());

  describeBinding('two instances on one Redis', (overrides) =>
    Promise.all([startRedisService(redis.url, overrides), startRedisService(redis.url, overrides)]),
  );

  it('stores the binding with the run (a caller field of its meta hash, living as long as the log), and none with auth off', async () => {
    const admin = redis.admin();
    const secured = await startRedisService(redis.url, { jwtSecret: JWT_SECRET, eventTtlS: 120, keepAliveMs: null });
    const open = await startRedisService(redis.url, { eventTtlS: 120, keepAliveMs: null });
    try {
      const sessionId = newSessionId();
      expect((await post(secured, synthetic(sessionId, { events: 1 }), bearer(token('alice')))).status).toBe(200);
      const meta = `timeline:{${sessionId}}:meta`;
      expect(await admin.hget(meta, 'caller')).toBe('alice');
      // The binding made before the run may lapse: the run's own keeps the session alice's.
      await admin.del(`timeline:{${sessionId}}:caller`);
      await admin.expire(meta, 5000);
      const historyAs = (who: string) => request(secured.service.app).get(`/timeline/${sessionId}`).set(bearer(token(who)));
      expectJsonError(await historyAs('bob'), 404, 'session_not_found');
      expect((await streamAnswer(`${secured.url}/timeline/stream/${sessionId}`, bearer(token('bob')))).status).toBe(404);
      expect((await historyAs('alice')).status).toBe(200);
      expect(await admin.exists(`timeline:{${sessionId}}:caller`)).toBe(0);

      const anyone = newSessionId();
      expect((await post(open, synthetic(anyone, { events: 1 }))).status).toBe(200);
      expect((await request(open.service.app).get(`/timeline/${anyone}`)).status).toBe(200);
      expect(await admin.exists(`timeline:{${anyone}}:meta`)).toBe(1);
      expect(await admin.hget(`timeline:{${anyone}}:meta`, 'caller')).toBeNull();
      expect(await admin.exists(`timeline:{${anyone}}:caller`)).toBe(0);
    } finally {
      await Promise.all([secured.close(), open.close()]);
    }
  });
});

describe('MemoryBus.bindCaller expiry', () => {
  it('lets a binding lapse EVENT_TTL_S after its last touch, but never while the session log is kept', async () => {
    let now = 1_000_000;
    const bus = new MemoryBus({ eventTtlS: 10, now: () => now });
    try {
      const waiting = newSessionId();
      expect(await bus.bindCaller(waiting, 'alice')).toBe(true);
      now += 9_000;
      expect(await bus.bindCaller(waiting, 'bob')).toBe(false);
      expect(await bus.bindCaller(waiting, 'alice')).toBe(true); // a touch keeps it 10 s more
      now += 9_000;
      expect(await bus.bindCaller(waiting, 'bob')).toBe(false);
      now += 1_000;
      expect(await bus.bindCaller(waiting, 'bob')).toBe(true);

      const started = newSessionId();
      expect(await bus.bindCaller(started, 'alice')).toBe(true);
      expect(await bus.claimRun(started, 'owner', 60_000)).toBe(true);
      now += 60_000;
      expect(await bus.bindCaller(started, 'bob')).toBe(false);
    } finally {
      await bus.close();
    }
  });
});
