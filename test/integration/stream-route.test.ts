import request from 'supertest';
import type { TimelineEvent } from '../../client-sdk/src/types';
import type { Config } from '../../server/config';
import type { Service } from '../../server/service';
import { createTestService, newSessionId, synthetic } from '../helpers/service';
import { isNamed, sseBody, wireFrames, type SseBody, type SseFrame } from '../helpers/sse-reader';
import { range, seqs } from '../helpers/timeline-fixtures';

/**
 * The stream route through supertest on `request(app)`, as an integrator tests an app built on
 * the service: each stream is read to its end (after `done`, `expired`, or a `204`), parsed as
 * SSE. A session with no run ends by itself after a short STREAM_IDLE_TIMEOUT_MS.
 */

const IDLE_MS = 300;

/** `GET /timeline/stream/<sessionId>` read to its end; `onFrame` sees each frame as it comes. */
function stream(
  service: Service,
  sessionId: string,
  { headers = {}, query = '', onFrame }: { headers?: Record<string, string>; query?: string; onFrame?: (frame: SseFrame) => void } = {},
) {
  return request(service.app)
    .get(`/timeline/stream/${sessionId}${query}`)
    .set(headers)
    .buffer(true)
    .parse(sseBody(onFrame));
}

const bodyOf = (res: request.Response) => res.body as SseBody;
const eventsOf = (body: SseBody) =>
  body.frames.filter((frame) => frame.event === undefined).map((frame) => JSON.parse(frame.data) as TimelineEvent);
const namesOf = (body: SseBody) => body.frames.filter((frame) => frame.event !== undefined).map((frame) => frame.event);

/** A run of `events` synthetic events on `sessionId`, answered when it ends. */
const run = (service: Service, sessionId: string, events: number, params: Record<string, unknown> = {}) =>
  request(service.app).post('/execute').send(synthetic(sessionId, { events, ...params }));

function withService(overrides: Partial<Config>): () => Service {
  let service: Service;
  beforeAll(() => {
    service = createTestService({ keepAliveMs: null, streamIdleTimeoutMs: IDLE_MS, ...overrides });
  });
  afterAll(() => service.close());
  return () => service;
}

describe('GET /timeline/stream/:sessionId on request(app)', () => {
  const service = withService({});

  it('answers the SSE headers, then retry and ready as the first frame; a session with no run ends with expired', async () => {
    const sessionId = newSessionId();
    const res = await stream(service(), sessionId);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['cache-control']).toBe('no-cache, no-transform');
    expect(res.headers['x-accel-buffering']).toBe('no');
    const body = bodyOf(res);
    expect(wireFrames(body.raw)[0]).toEqual([
      ['retry', '2000'],
      ['event', 'ready'],
      ['data', JSON.stringify({ session_id: sessionId, status: 'waiting' })],
    ]);
    expect(body.retry).toBe(2000);
    expect(body.frames.map((frame) => frame.event)).toEqual(['ready', 'expired']);
    expect(JSON.parse(body.frames[1].data)).toEqual({ code: 'idle_timeout' });
    // Neither carries an id: it would become the client's Last-Event-ID.
    expect(body.frames.map((frame) => frame.id)).toEqual([undefined, undefined]);
  });

  it('streams a run started after ready: every event once, in order, with its id, then done with its id, then the end', async () => {
    const sessionId = newSessionId();
    const runs: Array<Promise<request.Response>> = [];
    const res = await stream(service(), sessionId, {
      onFrame: (frame) => {
        if (frame.event === 'ready') runs.push(run(service(), sessionId, 25).then((response) => response));
      },
    });
    const body = bodyOf(res);
    const events = eventsOf(body);
    expect(seqs(events)).toEqual(range(1, 27));
    const synthetic = events.flatMap((event) => (event.type === 'AGENT_MESSAGE' && 'i' in event.details ? [event.details.i] : []));
    expect(synthetic).toEqual(range(1, 25));
    const eventFrames = body.frames.filter((frame) => frame.event === undefined);
    expect(eventFrames.map((frame) => frame.id)).toEqual(events.map((event) => event.event_id));
    expect(namesOf(body)).toEqual(['ready', 'done']);
    const done = body.frames.at(-1) as SseFrame;
    expect(done.event).toBe('done');
    expect(done.id).toMatch(/^\d+-\d+$/);
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 25 } });
    expect(JSON.parse(body.frames[0].data)).toEqual({ session_id: sessionId, status: 'waiting' });
    expect(runs).toHaveLength(1);
    const response = await runs[0];
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ session_id: sessionId, status: 'completed', event_count: 27 });
  });

  it('replays a finished session in full to a late reader, then done', async () => {
    const sessionId = newSessionId();
    expect((await run(service(), sessionId, 10)).status).toBe(200);
    const body = bodyOf(await stream(service(), sessionId));
    expect(JSON.parse(body.frames[0].data)).toEqual({ session_id: sessionId, status: 'completed' });
    expect(seqs(eventsOf(body))).toEqual(range(1, 12));
    expect(namesOf(body)).toEqual(['ready', 'done']);
  });

  it('resumes after Last-Event-ID, from the header or from ?lastEventId=, with no gap and no duplicate', async () => {
    const sessionId = newSessionId();
    await run(service(), sessionId, 10);
    const all = eventsOf(bodyOf(await stream(service(), sessionId)));
    const cut = all[4].event_id;
    const rest = all.slice(5).map((event) => event.event_id);

    const byHeader = bodyOf(await stream(service(), sessionId, { headers: { 'Last-Event-ID': cut } }));
    expect(eventsOf(byHeader).map((event) => event.event_id)).toEqual(rest);
    expect(namesOf(byHeader)).toEqual(['ready', 'done']);

    const byQuery = bodyOf(await stream(service(), sessionId, { query: `?lastEventId=${cut}` }));
    expect(eventsOf(byQuery).map((event) => event.event_id)).toEqual(rest);
    expect(namesOf(byQuery)).toEqual(['ready', 'done']);
  });

  it('answers 204 No Content, with no body, to a reconnect whose Last-Event-ID is the done id', async () => {
    const sessionId = newSessionId();
    await run(service(), sessionId, 2);
    const done = bodyOf(await stream(service(), sessionId)).frames.find(isNamed('done')) as SseFrame;
    const again = await stream(service(), sessionId, { headers: { 'Last-Event-ID': done.id as string } });
    expect(again.status).toBe(204);
    expect(bodyOf(again)?.raw ?? '').toBe('');
  });

  it('answers the contract JSON errors for a bad session id and a malformed Last-Event-ID', async () => {
    const badSession = await request(service().app).get('/timeline/stream/not-a-uuid');
    expect(badSession.status).toBe(400);
    expect(badSession.body).toEqual({ error: { code: 'invalid_session_id', message: expect.any(String) } });
    const badId = await request(service().app).get(`/timeline/stream/${newSessionId()}`).set('Last-Event-ID', 'nope');
    expect(badId.status).toBe(400);
    expect(badId.body.error.code).toBe('invalid_last_event_id');
  });
});

describe('a trimmed log on request(app)', () => {
  const service = withService({ maxEventsPerSession: 5 });

  it('announces event: gap, without an id, before replaying what is left', async () => {
    const sessionId = newSessionId();
    await run(service(), sessionId, 5);
    const body = bodyOf(await stream(service(), sessionId));
    expect(namesOf(body)).toEqual(['ready', 'gap', 'done']);
    const events = eventsOf(body);
    expect(seqs(events)).toEqual([3, 4, 5, 6, 7]);
    const gap = body.frames.find(isNamed('gap')) as SseFrame;
    expect(JSON.parse(gap.data)).toEqual({ after: null, first_available: events[0].event_id });
    expect(gap.id).toBeUndefined();
    expect(body.frames.indexOf(gap)).toBe(1);
  });
});

describe('keep-alive on request(app)', () => {
  const service = withService({ keepAliveMs: 40 });

  it('sends :ping comments, each a frame of its own, while a stream is idle', async () => {
    const body = bodyOf(await stream(service(), newSessionId()));
    expect(namesOf(body)).toEqual(['ready', 'expired']);
    expect(body.comments.length).toBeGreaterThanOrEqual(3);
    expect(new Set(body.comments)).toEqual(new Set(['ping']));
    expect(wireFrames(body.raw).filter((frame) => frame[0][0] === '')).toEqual(body.comments.map(() => [['', 'ping']]));
  });
});
