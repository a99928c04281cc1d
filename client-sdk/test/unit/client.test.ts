import { TimelineClient, TimelineError, type ConnectionState, type TimelineClientOptions } from '../../src';
import type { TimelineEvent } from '../../src/types';
import {
  doneFrame,
  errorJson,
  eventFrame,
  eventFrames,
  eventId,
  FakeService,
  gapFrame,
  json,
  PING,
  readyFrame,
  timelineEvent,
  type FakeStream,
} from '../helpers/fake-service';
import { nextEvent, record, settle } from '../../../test/helpers/sdk-run';
import { range, seqs } from '../../../test/helpers/timeline-fixtures';
import { within } from '../../../test/helpers/wait';

/**
 * The SDK's own logic (ordering, dedupe, reconnect, backoff, stop conditions) against a
 * scripted service behind its injectable `fetch`. The real server is in
 * client-sdk/test/integration/behaviour.ts.
 */

const BASE = 'http://timeline.test';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const FOLLOWED = '0b8e0d6a-5c51-4b9e-8d67-2f0d0c3b7a10';

function setup(options: Partial<TimelineClientOptions> = {}) {
  const service = new FakeService();
  const client = new TimelineClient({
    baseUrl: BASE,
    fetch: service.fetch,
    reconnect: { initialDelayMs: 10, maxDelayMs: 200, maxAttempts: 5 },
    ...options,
  });
  return { service, client };
}

describe('TimelineClient.execute', () => {
  it('makes a v4 session id, opens the stream, and POSTs /execute only after ready', async () => {
    const { service, client } = setup({ headers: { Authorization: 'Bearer k1' } });
    const run = client.execute({ project_id: 'p1', query: 'hello', workflow: 'synthetic', params: { events: 2 } });
    expect(run.sessionId).toMatch(UUID_V4);
    const recorded = record(run);

    const stream = await service.nextStream();
    expect(stream.request.url).toBe(`${BASE}/timeline/stream/${run.sessionId}`);
    expect(stream.request.headers.get('Accept')).toBe('text/event-stream');
    expect(stream.request.headers.get('Last-Event-ID')).toBeNull();
    expect(stream.request.headers.get('Authorization')).toBe('Bearer k1');
    // Open but not ready: no POST yet, even after a few turns of the event loop.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(service.requestsTo('/execute')).toHaveLength(0);

    stream.send(readyFrame(run.sessionId));
    const [post] = await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    expect(post.method).toBe('POST');
    expect(post.headers.get('Prefer')).toBe('respond-async');
    expect(post.headers.get('Content-Type')).toBe('application/json');
    expect(post.headers.get('Authorization')).toBe('Bearer k1');
    expect(JSON.parse(post.body as string)).toEqual({
      project_id: 'p1',
      query: 'hello',
      workflow: 'synthetic',
      params: { events: 2 },
      session_id: run.sessionId,
    });

    stream.send(eventFrames(run.sessionId, 1, 4) + doneFrame(eventId(5), { status: 'completed', result: { answer: 42 } }));
    expect(await settle(run)).toEqual({ result: { answer: 42 } });
    expect(seqs(recorded.events)).toEqual([1, 2, 3, 4]);
    expect(recorded.events[0]).toEqual(timelineEvent(run.sessionId, 1));
    expect(recorded.done).toEqual([{ id: eventId(5), status: 'completed', result: { answer: 42 } }]);
    expect(recorded.errors).toEqual([]);
    expect(run.lastEventId).toBe(eventId(5));
    expect(run.finished).toBe(true);
    await within(stream.closed, 1000, 'the stream to be released');
  });

  it('delivers the same events to the iterator and to callbacks, and ends the iterator after done', async () => {
    const { service, client } = setup();
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const recorded = record(run);
    const stream = await service.nextStream();
    stream.send(readyFrame(run.sessionId) + eventFrames(run.sessionId, 1, 3));
    stream.send(doneFrame(eventId(4), { status: 'completed', result: 'ok' }));

    const iterated: TimelineEvent[] = [];
    for await (const event of run) iterated.push(event);
    expect(seqs(iterated)).toEqual([1, 2, 3]);
    expect(iterated).toEqual(recorded.events);
    expect(() => run[Symbol.asyncIterator]()).toThrow(TypeError);
  });

  it('calls a header function per request, so a token can change between reconnects', async () => {
    let token = 0;
    const { service, client } = setup({ headers: () => ({ Authorization: `Bearer t${++token}` }) });
    const run = client.follow(FOLLOWED);
    const first = await service.nextStream();
    first.send(readyFrame(FOLLOWED, 'running'));
    first.end();
    const second = await service.nextStream();
    expect(first.request.headers.get('Authorization')).toBe('Bearer t1');
    expect(second.request.headers.get('Authorization')).toBe('Bearer t2');
    second.send(readyFrame(FOLLOWED, 'running') + doneFrame('9-0', { status: 'completed' }));
    expect(await settle(run)).toEqual({ result: undefined });
  });

  it('rejects an explicit session_id: the SDK makes it', () => {
    const { client } = setup();
    expect(() => client.execute({ project_id: 'p', query: 'q', session_id: FOLLOWED } as never)).toThrow(TypeError);
  });

  it('fails with the server code when POST /execute is refused, and closes the stream', async () => {
    const { service, client } = setup();
    service.executeAnswer = () => errorJson(409, 'session_conflict');
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const recorded = record(run);
    const stream = await service.nextStream();
    stream.send(readyFrame(run.sessionId));
    const { error } = await settle(run);
    expect(error?.code).toBe('session_conflict');
    expect(error?.status).toBe(409);
    expect(recorded.errors).toEqual([error]);
    expect(recorded.done).toEqual([]);
    await within(stream.closed, 1000, 'the stream to be closed');
    expect(stream.request.signal?.aborted).toBe(true);
  });

  it('fails with network_error when POST /execute gets no answer, without retrying it', async () => {
    const { service, client } = setup();
    service.executeAnswer = () => Promise.reject(new TypeError('fetch failed', { cause: new Error('socket hang up') }));
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const stream = await service.nextStream();
    stream.send(readyFrame(run.sessionId));
    const { error } = await settle(run);
    expect(error?.code).toBe('network_error');
    expect(error?.message).toMatch(/POST \/execute failed: fetch failed: socket hang up/);
    expect(service.requestsTo('/execute')).toHaveLength(1);
    await within(stream.closed, 1000, 'the stream to be closed');
  });

  it('cancel() while POST /execute is in flight cancels once the run was accepted', async () => {
    const { service, client } = setup();
    let accept: () => void = () => undefined;
    const accepted = service.executeAnswer;
    service.executeAnswer = (request) =>
      new Promise<Response>((resolve) => {
        accept = () => resolve(accepted(request));
      });
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const stream = await service.nextStream();
    stream.send(readyFrame(run.sessionId));
    await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    const cancelling = run.cancel();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(service.requestsTo(`/timeline/${run.sessionId}/cancel`)).toHaveLength(0);
    accept();
    await within(cancelling, 2000, 'cancel() to resolve');
    expect(service.requestsTo(`/timeline/${run.sessionId}/cancel`)).toHaveLength(1);
    stream.send(doneFrame(eventId(1), { status: 'cancelled' }));
    expect((await settle(run)).error?.code).toBe('cancelled');
  });

  it('fails with invalid_request (400) and never retries the POST', async () => {
    const { service, client } = setup();
    service.executeAnswer = () => errorJson(400, 'invalid_request');
    const run = client.execute({ project_id: '', query: 'q' });
    (await service.nextStream()).send(readyFrame(run.sessionId));
    expect((await settle(run)).error?.code).toBe('invalid_request');
    expect(service.requestsTo('/execute')).toHaveLength(1);
  });
});

describe('resuming a dropped stream', () => {
  it('reconnects with Last-Event-ID and delivers each event once, in order, across overlapping replays', async () => {
    const { service, client } = setup();
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const recorded = record(run);

    const first = await service.nextStream();
    first.send(readyFrame(run.sessionId) + eventFrames(run.sessionId, 1, 3));
    await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    first.send(eventFrame(run.sessionId, 4).slice(0, 25)); // half a frame, then the socket dies
    first.cut();

    const second = await service.nextStream();
    expect(second.request.headers.get('Last-Event-ID')).toBe(eventId(3));
    // A replay that overlaps what was delivered, and a stale frame: neither is delivered again.
    second.send(readyFrame(run.sessionId, 'running') + eventFrames(run.sessionId, 2, 6) + eventFrame(run.sessionId, 1));
    second.end();

    const third = await service.nextStream();
    expect(third.request.headers.get('Last-Event-ID')).toBe(eventId(6));
    third.send(readyFrame(run.sessionId, 'running') + eventFrames(run.sessionId, 7, 8));
    third.send(doneFrame(eventId(9), { status: 'completed', result: 1 }));

    expect(await settle(run)).toEqual({ result: 1 });
    expect(seqs(recorded.events)).toEqual(range(1, 8));
    expect(service.requestsTo('/execute')).toHaveLength(1);
  });

  it("waits the server's retry: between reconnects, doubling while attempts fail", async () => {
    const { service, client } = setup({ reconnect: { initialDelayMs: 5000, maxDelayMs: 10000, maxAttempts: 5 } });
    const run = client.follow(FOLLOWED);
    const first = await service.nextStream();
    // After the drop, one failed attempt: the delay starts at the server's 120 ms (not the
    // 5000 ms default) and doubles.
    service.streamAnswers.push(() => new Response('bad gateway', { status: 502 }));
    first.send(readyFrame(FOLLOWED, 'running', 120));
    first.cut();
    const cutAt = Date.now();
    const third = await service.nextStream(5000);
    const [, failed, reconnected] = service.requestsTo('/timeline/stream/');
    expect(failed.at - cutAt).toBeGreaterThanOrEqual(120);
    expect(failed.at - cutAt).toBeLessThan(1000);
    expect(reconnected.at - failed.at).toBeGreaterThanOrEqual(240);
    expect(reconnected.at - failed.at).toBeLessThan(2000);
    third.send(readyFrame(FOLLOWED, 'running') + doneFrame('9-0', { status: 'completed' }));
    await settle(run);
  });

  it('honours Retry-After on 503 too_many_streams, then connects', async () => {
    const { service, client } = setup();
    service.streamAnswers.push(() => errorJson(503, 'too_many_streams', { 'Retry-After': '1' }));
    const run = client.follow(FOLLOWED);
    const recorded = record(run);
    const stream = await service.nextStream(5000);
    const [refused, accepted] = service.requestsTo('/timeline/stream/');
    expect(accepted.at - refused.at).toBeGreaterThanOrEqual(1000);
    stream.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 1, 2) + doneFrame(eventId(3), { status: 'completed' }));
    await settle(run);
    expect(seqs(recorded.events)).toEqual([1, 2]);
  });

  it('gives up after maxAttempts failed attempts in a row with a clear error', async () => {
    const { service, client } = setup({ reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 3 } });
    const refuse = () => Promise.reject(new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') }));
    service.streamAnswers.push(refuse, refuse, refuse, refuse);
    const run = client.follow(FOLLOWED);
    const recorded = record(run);
    const { error } = await settle(run);
    expect(error?.code).toBe('retries_exhausted');
    expect(error?.message).toMatch(/after 3 failed attempts in a row/);
    expect(error?.message).toMatch(/ECONNREFUSED/);
    expect((error?.cause as TimelineError).code).toBe('network_error');
    expect(service.requestsTo('/timeline/stream/')).toHaveLength(3);
    expect(recorded.errors).toEqual([error]);
  });

  it('counts only attempts in a row: a connection that reached ready resets the count', async () => {
    const { service, client } = setup({ reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 2 } });
    const refuse = () => errorJson(503, 'bus_unavailable');
    const run = client.follow(FOLLOWED);
    for (let round = 0; round < 3; round++) {
      const stream = await service.nextStream();
      stream.send(readyFrame(FOLLOWED, 'running'));
      stream.cut();
      service.streamAnswers.push(refuse); // one failure, then an open stream again
    }
    const last = await service.nextStream();
    last.send(readyFrame(FOLLOWED, 'running') + doneFrame('9-0', { status: 'completed' }));
    expect(await settle(run)).toEqual({ result: undefined });
  });

  it('treats a silent stream as dropped; keep-alive comments keep it open', async () => {
    const { service, client } = setup({ stallTimeoutMs: 300 });
    const run = client.follow(FOLLOWED);
    const first = await service.nextStream();
    first.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 1, 1));
    // Pings for two stall periods: the connection stays.
    for (let i = 0; i < 12; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      first.send(PING);
    }
    expect(first.isClosed).toBe(false);
    expect(service.requestsTo('/timeline/stream/')).toHaveLength(1);
    // Then silence: the SDK gives up on this connection and resumes.
    const silentFrom = Date.now();
    const second = await service.nextStream(3000);
    expect(second.request.at - silentFrom).toBeGreaterThanOrEqual(300);
    expect(first.isClosed).toBe(true);
    expect(second.request.headers.get('Last-Event-ID')).toBe(eventId(1));
    second.send(readyFrame(FOLLOWED, 'running') + doneFrame(eventId(2), { status: 'completed' }));
    await settle(run);
  });

  it('treats a request that never answers as stalled too', async () => {
    const { service, client } = setup({ stallTimeoutMs: 100 });
    service.streamAnswers.push(
      (request) =>
        new Promise<Response>((_, reject) => {
          request.signal?.addEventListener('abort', () => reject(request.signal?.reason));
        }),
    );
    const run = client.follow(FOLLOWED);
    const stream = await service.nextStream(2000);
    stream.send(readyFrame(FOLLOWED, 'running') + doneFrame('9-0', { status: 'completed' }));
    await settle(run);
    expect(service.requestsTo('/timeline/stream/')).toHaveLength(2);
  });

  it('tells onConnection: live at ready, reconnecting once per outage, then live again', async () => {
    const { service, client } = setup();
    const states: ConnectionState[] = [];
    const run = client.follow(FOLLOWED, { onConnection: (state) => states.push(state) });
    const first = await service.nextStream();
    first.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 1, 1));
    await nextEvent(run, (event) => event.seq === 1, 'event 1');
    expect(states).toEqual(['live']);

    // A drop, then a refused attempt: one outage, one `reconnecting`.
    service.streamAnswers.push(() => errorJson(503, 'bus_unavailable'));
    first.cut();
    const second = await service.nextStream();
    expect(service.requestsTo('/timeline/stream/')).toHaveLength(3);
    expect(states).toEqual(['live', 'reconnecting']);
    second.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 2, 2));
    await nextEvent(run, (event) => event.seq === 2, 'event 2');
    expect(states).toEqual(['live', 'reconnecting', 'live']);

    second.send(doneFrame(eventId(3), { status: 'completed' }));
    expect(await settle(run)).toEqual({ result: undefined });
    expect(states).toEqual(['live', 'reconnecting', 'live']);
  });

  it('tells onConnection nothing for a failure that ends the run', async () => {
    const { service, client } = setup();
    const states: ConnectionState[] = [];
    const run = client.follow(FOLLOWED, { onConnection: (state) => states.push(state) });
    const stream = await service.nextStream();
    stream.send(readyFrame(FOLLOWED) + 'event: expired\ndata: {"code":"idle_timeout"}\n\n');
    expect((await settle(run)).error?.code).toBe('expired');
    expect(states).toEqual(['live']);
  });
});

describe('stopping', () => {
  it('stops on 4xx from the stream route with the server code, without retrying', async () => {
    const { service, client } = setup();
    service.streamAnswers.push(() => errorJson(400, 'invalid_session_id'));
    const run = client.follow('not-a-uuid');
    const { error } = await settle(run);
    expect(error).toBeInstanceOf(TimelineError);
    expect(error?.code).toBe('invalid_session_id');
    expect(error?.status).toBe(400);
    expect(service.requests).toHaveLength(1);
  });

  it('stops on event: expired with the typed error expired', async () => {
    const { service, client } = setup();
    const run = client.follow(FOLLOWED);
    const recorded = record(run);
    const stream = await service.nextStream();
    stream.send(readyFrame(FOLLOWED) + PING + 'event: expired\ndata: {"code":"idle_timeout"}\n\n');
    stream.end();
    const { error } = await settle(run);
    expect(error?.code).toBe('expired');
    expect(recorded.errors).toEqual([error]);
    expect(service.requests).toHaveLength(1);
  });

  it('on 204 (done already delivered) reads done from the history', async () => {
    const { service, client } = setup();
    service.streamAnswers.push(() => new Response(null, { status: 204 }));
    service.historyAnswer = () =>
      json(200, { session_id: FOLLOWED, status: 'completed', events: [], done: { id: '7-0', status: 'completed', result: 'r' } });
    const run = client.follow(FOLLOWED, { lastEventId: '7-0' });
    const recorded = record(run);
    expect(await settle(run)).toEqual({ result: 'r' });
    expect(recorded.done).toEqual([{ id: '7-0', status: 'completed', result: 'r' }]);
    expect(service.requests[0].headers.get('Last-Event-ID')).toBe('7-0');
    expect(service.requests.map((request) => new URL(request.url).pathname)).toEqual([
      `/timeline/stream/${FOLLOWED}`,
      `/timeline/${FOLLOWED}`,
    ]);
  });

  it('stops on abort: the result rejects with aborted and nothing reconnects', async () => {
    const { service, client } = setup();
    const controller = new AbortController();
    const run = client.follow(FOLLOWED, { signal: controller.signal });
    const recorded = record(run);
    const stream = await service.nextStream();
    stream.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 1, 2));
    await nextEvent(run, (event) => event.seq === 2, 'event 2');
    controller.abort(new Error('unmounted'));
    const { error } = await settle(run);
    expect(error?.code).toBe('aborted');
    expect((error?.cause as Error).message).toBe('unmounted');
    await within(stream.closed, 1000, 'the stream to be closed');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(service.requests).toHaveLength(1);
    expect(recorded.errors).toHaveLength(1);
  });

  it('stops at once when the signal is already aborted', async () => {
    const { service, client } = setup();
    const run = client.follow(FOLLOWED, { signal: AbortSignal.abort() });
    expect((await settle(run)).error?.code).toBe('aborted');
    expect(service.requests).toHaveLength(0);
  });

  it('stops on a 200 that is not an event stream (a proxy page) with protocol_error', async () => {
    const { service, client } = setup();
    service.streamAnswers.push(() => new Response('<html></html>', { status: 200, headers: { 'Content-Type': 'text/html' } }));
    const { error } = await settle(client.follow(FOLLOWED));
    expect(error?.code).toBe('protocol_error');
    expect(service.requests).toHaveLength(1);
  });
});

describe('run outcomes', () => {
  it('rejects a failed run with the code from done.error, keeping the done record', async () => {
    const { service, client } = setup();
    const run = client.follow(FOLLOWED);
    const recorded = record(run);
    const stream = await service.nextStream();
    const done = { status: 'failed' as const, error: { code: 'run_lost', message: 'lost' } };
    stream.send(readyFrame(FOLLOWED, 'running') + doneFrame('3-0', done));
    const { error } = await settle(run);
    expect(error?.code).toBe('run_lost');
    expect(error?.done).toEqual({ id: '3-0', ...done });
    // The server's done arrived: onDone, not onError.
    expect(recorded.done).toEqual([{ id: '3-0', ...done }]);
    expect(recorded.errors).toEqual([]);
  });

  it('surfaces a gap to onGap and run.gaps, then goes on', async () => {
    const { service, client } = setup();
    const run = client.follow(FOLLOWED, { lastEventId: eventId(1) });
    const recorded = record(run);
    const stream = await service.nextStream();
    const gap = { after: eventId(1), first_available: eventId(5) };
    stream.send(readyFrame(FOLLOWED, 'running') + gapFrame(gap) + eventFrames(FOLLOWED, 5, 6));
    stream.send(doneFrame(eventId(7), { status: 'completed' }));
    await settle(run);
    expect(recorded.gaps).toEqual([gap]);
    expect(run.gaps).toEqual([gap]);
    expect(seqs(recorded.events)).toEqual([5, 6]);
  });

  it('cancel() posts the cancel route; the run then ends cancelled', async () => {
    const { service, client } = setup();
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const stream = await service.nextStream();
    stream.send(readyFrame(run.sessionId) + eventFrames(run.sessionId, 1, 1));
    await service.waitForRequests((request) => request.url.endsWith('/execute'), 1);
    await run.cancel();
    const [cancel] = service.requestsTo(`/timeline/${run.sessionId}/cancel`);
    expect(cancel.method).toBe('POST');
    stream.send(doneFrame(eventId(2), { status: 'cancelled' }));
    const { error } = await settle(run);
    expect(error?.code).toBe('cancelled');
    expect(error?.done?.status).toBe('cancelled');
    await run.cancel(); // finished: nothing to do, no request
    expect(service.requestsTo(`/timeline/${run.sessionId}/cancel`)).toHaveLength(1);
  });

  it('cancel() before the stream is ready never starts the run', async () => {
    const { service, client } = setup();
    const run = client.execute({ project_id: 'p1', query: 'q' });
    const stream = await service.nextStream();
    await run.cancel();
    stream.send(readyFrame(run.sessionId));
    expect((await settle(run)).error?.code).toBe('cancelled');
    await within(stream.closed, 1000, 'the stream to be closed');
    expect(service.requestsTo('/execute')).toHaveLength(0);
    expect(service.requestsTo(`/timeline/${run.sessionId}/cancel`)).toHaveLength(0);
  });

  it('cancel() rejects with the server code; a run that already finished is not an error', async () => {
    const { service, client } = setup();
    service.cancelAnswer = () => errorJson(404, 'session_not_found');
    await expect(client.cancel(FOLLOWED)).rejects.toMatchObject({ code: 'session_not_found', status: 404 });
    service.cancelAnswer = () => errorJson(409, 'session_finished');
    await expect(client.cancel(FOLLOWED)).resolves.toBeUndefined();
  });

  it('leaving the iterator early does not stop the run', async () => {
    const { service, client } = setup();
    const run = client.follow(FOLLOWED);
    const stream: FakeStream = await service.nextStream();
    stream.send(readyFrame(FOLLOWED, 'running') + eventFrames(FOLLOWED, 1, 2));
    for await (const event of run) {
      expect(event.seq).toBe(1);
      break;
    }
    stream.send(eventFrames(FOLLOWED, 3, 3) + doneFrame(eventId(4), { status: 'completed', result: 'r' }));
    expect(await settle(run)).toEqual({ result: 'r' });
    expect(run.lastEventId).toBe(eventId(4));
  });
});
