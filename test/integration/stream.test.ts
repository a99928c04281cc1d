import { execute, newSessionId, startService, type RunningService, synthetic } from '../helpers/service';
import { isNamed, openSse, timelineEvents, seqAtLeast, wireFrames } from '../helpers/sse-reader';

type Ev = { event_id: string; seq: number; type: string; details?: Record<string, unknown> };


describe('GET /timeline/stream/:sessionId', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null });
  });
  afterAll(() => svc.close());

  it('answers SSE headers at once, then retry + ready with status waiting', async () => {
    const sessionId = newSessionId();
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    expect(reader.status).toBe(200);
    expect(reader.headers['content-type']).toBe('text/event-stream');
    expect(reader.headers['cache-control']).toBe('no-cache, no-transform');
    expect(reader.headers['x-accel-buffering']).toBe('no');
    const ready = await reader.waitFor(isNamed('ready'));
    expect(JSON.parse(ready.data)).toEqual({ session_id: sessionId, status: 'waiting' });
    expect(ready.id).toBeUndefined();
    expect(reader.retry).toBe(2000);
    // One first frame: the reconnection delay, then `ready`.
    const [first] = wireFrames(reader.raw);
    expect(first).toEqual([
      ['retry', '2000'],
      ['event', 'ready'],
      ['data', ready.data],
    ]);
    reader.destroy();
  });

  it('streams a run live: every event once, in order, with ids, then done, then the response ends', async () => {
    const sessionId = newSessionId();
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await reader.waitFor(isNamed('ready'));
    const response = await execute(svc.url, synthetic(sessionId, { events: 25 }));
    expect(response.status).toBe(200);
    const done = await reader.waitFor(isNamed('done'));
    await reader.ended;
    const events = timelineEvents<Ev>(reader);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 27 }, (_, i) => i + 1));
    expect(events[0].type).toBe('WORKFLOW_START');
    expect(events.at(-1)?.type).toBe('WORKFLOW_COMPLETE');
    expect(events.filter((e) => e.type === 'AGENT_MESSAGE').map((e) => e.details?.i)).toEqual(
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    const frames = reader.frames.filter((f) => f.event === undefined);
    frames.forEach((frame, i) => expect(frame.id).toBe(events[i].event_id));
    expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 25 } });
    expect(done.id).toBeDefined();
    expect(reader.frames.at(-1)).toBe(done);
    expect(response.body.event_count).toBe(27);
  });

  it('delivers an event before the run ends (live, not buffered)', async () => {
    const sessionId = newSessionId();
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await reader.waitFor(isNamed('ready'));
    const run = execute(svc.url, synthetic(sessionId, { events: 3, interval_ms: 400 }));
    let runEnded = false;
    void run.then(() => (runEnded = true));
    await reader.waitFor((f) => f.event === undefined && JSON.parse(f.data).type === 'AGENT_MESSAGE');
    expect(runEnded).toBe(false);
    expect(reader.frames.some((f) => f.event === 'done')).toBe(false);
    await run;
    await reader.waitFor(isNamed('done'));
  });

  it('replays a finished session in full to a late reader, then done', async () => {
    const sessionId = newSessionId();
    await execute(svc.url, synthetic(sessionId, { events: 10 }));
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    const ready = await reader.waitFor(isNamed('ready'));
    expect(JSON.parse(ready.data).status).toBe('completed');
    await reader.waitFor(isNamed('done'));
    await reader.ended;
    expect(timelineEvents<Ev>(reader).map((e) => e.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });

  it('resumes after Last-Event-ID (header or ?lastEventId=) with no gap and no duplicate', async () => {
    const sessionId = newSessionId();
    await execute(svc.url, synthetic(sessionId, { events: 10 }));
    const full = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await full.ended;
    const all = timelineEvents<Ev>(full);
    const cut = all[4].event_id;

    const byHeader = await openSse(`${svc.url}/timeline/stream/${sessionId}`, { headers: { 'Last-Event-ID': cut } });
    await byHeader.ended;
    expect(timelineEvents<Ev>(byHeader).map((e) => e.seq)).toEqual(all.slice(5).map((e) => e.seq));
    expect(byHeader.frames.at(-1)?.event).toBe('done');

    const byQuery = await openSse(`${svc.url}/timeline/stream/${sessionId}?lastEventId=${cut}`);
    await byQuery.ended;
    expect(timelineEvents<Ev>(byQuery).map((e) => e.event_id)).toEqual(all.slice(5).map((e) => e.event_id));
  });

  it('resumes mid-run: reconnecting with the last id joins replay and live without gap or duplicate', async () => {
    const sessionId = newSessionId();
    const first = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await first.waitFor(isNamed('ready'));
    const run = execute(svc.url, synthetic(sessionId, { events: 40, interval_ms: 10 }));
    await first.waitFor(seqAtLeast(8));
    first.destroy();
    const seen = timelineEvents<Ev>(first);
    const second = await openSse(`${svc.url}/timeline/stream/${sessionId}`, {
      headers: { 'Last-Event-ID': seen.at(-1)!.event_id },
    });
    await second.waitFor(isNamed('done'));
    await run;
    const seqs = [...seen, ...timelineEvents<Ev>(second)].map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: 42 }, (_, i) => i + 1));
  });

  it('answers 204 to a reconnect whose Last-Event-ID is the done id', async () => {
    const sessionId = newSessionId();
    await execute(svc.url, synthetic(sessionId, { events: 2 }));
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    const done = await reader.waitFor(isNamed('done'));
    const again = await openSse(`${svc.url}/timeline/stream/${sessionId}`, { headers: { 'Last-Event-ID': done.id! } });
    expect(again.status).toBe(204);
    await again.ended;
    expect(again.raw).toBe('');
  });

  it('rejects a session id that is not a UUID and a malformed Last-Event-ID', async () => {
    for (const bad of ['abc', '123e4567-e89b-12d3-a456-42661417400', '123e4567e89b12d3a456426614174000']) {
      const res = await fetch(`${svc.url}/timeline/stream/${bad}`);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { code: 'invalid_session_id', message: expect.any(String) } });
    }
    const sessionId = newSessionId();
    for (const bad of ['nope', '12-', '1-2-3', '01-0', 'abc-1']) {
      const res = await fetch(`${svc.url}/timeline/stream/${sessionId}`, { headers: { 'Last-Event-ID': bad } });
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe('invalid_last_event_id');
    }
    const res = await fetch(`${svc.url}/timeline/stream/${sessionId}?lastEventId=zzz`);
    expect((await res.json()).error.code).toBe('invalid_last_event_id');
  });

  it('accepts an upper-case session id and treats it as the same session', async () => {
    const sessionId = newSessionId();
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId.toUpperCase()}`);
    await reader.waitFor(isNamed('ready'));
    await execute(svc.url, synthetic(sessionId, { events: 1 }));
    const done = await reader.waitFor(isNamed('done'));
    expect(JSON.parse(done.data).status).toBe('completed');
  });

  it('reports status running to a reader that joins mid-run', async () => {
    const sessionId = newSessionId();
    const run = execute(svc.url, synthetic(sessionId, { events: 3, interval_ms: 200 }));
    let ready;
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      ready = JSON.parse((await reader.waitFor(isNamed('ready'))).data);
      if (ready.status === 'running') {
        await reader.waitFor(isNamed('done'));
        break;
      }
      reader.destroy();
    }
    expect(ready.status).toBe('running');
    await run;
  });

  it('goes live with nothing to replay when Last-Event-ID is after everything retained', async () => {
    const sessionId = newSessionId();
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`, {
      headers: { 'Last-Event-ID': '99999999999999-0' },
    });
    const ready = await reader.waitFor(isNamed('ready'));
    expect(JSON.parse(ready.data).status).toBe('waiting');
    reader.destroy();
  });
});

describe('trimmed logs', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null, maxEventsPerSession: 5 });
  });
  afterAll(() => svc.close());

  it('announces event: gap before replaying what is left, never skipping silently', async () => {
    const sessionId = newSessionId();
    await execute(svc.url, synthetic(sessionId, { events: 5 }));
    const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await reader.ended;
    const gapIndex = reader.frames.findIndex(isNamed('gap'));
    expect(reader.frames.slice(0, gapIndex).map((f) => f.event)).toEqual(['ready']);
    const events = timelineEvents<Ev>(reader);
    expect(events.map((e) => e.seq)).toEqual([3, 4, 5, 6, 7]);
    const gap = reader.frames[gapIndex];
    expect(JSON.parse(gap.data)).toEqual({ after: null, first_available: events[0].event_id });
    expect(gap.id).toBeUndefined();
    expect(reader.frames.at(-1)?.event).toBe('done');
  });

  it('announces a gap to a reader resuming from a trimmed id, and none from a retained one', async () => {
    const sessionId = newSessionId();
    const live = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await live.waitFor(isNamed('ready'));
    await execute(svc.url, synthetic(sessionId, { events: 5 }));
    await live.ended;
    const all = timelineEvents<Ev>(live);
    expect(all).toHaveLength(7);
    expect(live.frames.some(isNamed('gap'))).toBe(false);

    const fromTrimmed = await openSse(`${svc.url}/timeline/stream/${sessionId}`, {
      headers: { 'Last-Event-ID': all[0].event_id },
    });
    await fromTrimmed.ended;
    const gap = fromTrimmed.frames.find(isNamed('gap'));
    expect(JSON.parse(gap!.data)).toEqual({ after: all[0].event_id, first_available: all[2].event_id });
    expect(timelineEvents<Ev>(fromTrimmed).map((e) => e.seq)).toEqual([3, 4, 5, 6, 7]);

    const fromRetained = await openSse(`${svc.url}/timeline/stream/${sessionId}`, {
      headers: { 'Last-Event-ID': all[1].event_id },
    });
    await fromRetained.ended;
    expect(fromRetained.frames.some(isNamed('gap'))).toBe(false);
    expect(timelineEvents<Ev>(fromRetained).map((e) => e.seq)).toEqual([3, 4, 5, 6, 7]);
  });
});

describe('stream timers', () => {
  it('sends `: ping` comments while idle', async () => {
    const svc = await startService({ keepAliveMs: 50 });
    try {
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`);
      await reader.waitForComments(3);
      expect(reader.comments.slice(0, 3)).toEqual(['ping', 'ping', 'ping']);
      // Each one a frame of its own: a comment line alone.
      expect(wireFrames(reader.raw).filter((frame) => frame[0][0] === '')).toEqual(
        reader.comments.map(() => [['', 'ping']]),
      );
      reader.destroy();
    } finally {
      await svc.close();
    }
  });

  it('expires a stream whose session never starts with event: expired, then closes', async () => {
    const svc = await startService({ streamIdleTimeoutMs: 150, keepAliveMs: null });
    try {
      const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`);
      const expired = await reader.waitFor(isNamed('expired'));
      expect(JSON.parse(expired.data)).toEqual({ code: 'idle_timeout' });
      await reader.ended;
      expect(reader.frames.map((f) => f.event)).toEqual(['ready', 'expired']);
    } finally {
      await svc.close();
    }
  });

  it('does not expire a stream once its run has started', async () => {
    const svc = await startService({ streamIdleTimeoutMs: 200, keepAliveMs: null });
    try {
      const sessionId = newSessionId();
      const reader = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      await reader.waitFor(isNamed('ready'));
      await execute(svc.url, synthetic(sessionId, { events: 4, interval_ms: 150 }));
      await reader.waitFor(isNamed('done'));
      expect(reader.frames.some((f) => f.event === 'expired')).toBe(false);
    } finally {
      await svc.close();
    }
  });
});

describe('HEAD /timeline/stream/:sessionId', () => {
  it('answers the stream headers at once without holding a stream open', async () => {
    const svc = await startService({ keepAliveMs: null });
    try {
      const res = await fetch(`${svc.url}/timeline/stream/${newSessionId()}`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      expect(svc.service.streams.size).toBe(0);
    } finally {
      await svc.close();
    }
  });
});
