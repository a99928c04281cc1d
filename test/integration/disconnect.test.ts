import type { LiveListener, LogSlice, Subscription } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { metricSample, request } from '../helpers/api';
import { execute, listenWatchingSockets, newSessionId, startService, type RunningService, synthetic } from '../helpers/service';
import { createParser } from 'eventsource-parser';
import { isNamed, openReady, openSse, sendStreamRequest, timelineEvents, type SseFrame, type SseReader, seqAtLeast } from '../helpers/sse-reader';
import { waitUntil, within } from '../helpers/wait';
import { range } from '../helpers/timeline-fixtures';

type Ev = { event_id: string; seq: number; type: string };



/** A metric's value as `GET /metrics` reports it (the way an operator sees it). */
async function metric(url: string, name: string): Promise<number> {
  return metricSample((await request(`${url}/metrics`)).text, name);
}

/** Waits until the instance holds nothing for any stream: no subscription, no slot, gauge at 0. */
async function expectNoStreamLeft(svc: RunningService): Promise<void> {
  const bus = svc.service.bus as MemoryBus;
  await waitUntil(() => bus.subscribedSessionCount === 0 && svc.service.streams.size === 0, {
    label: `streams to be released (subscribed sessions ${bus.subscribedSessionCount}, streams ${svc.service.streams.size})`,
  });
  expect(await metric(svc.url, 'timeline_streams_open')).toBe(0);
}

/**
 * The SSE frames in what a raw socket received of a stream response (head, then chunked
 * body), up to where the server cut it: a frame cut short is not one.
 */
function framesOfRawResponse(raw: Buffer): SseFrame[] {
  const body: Buffer[] = [];
  let at = raw.indexOf('\r\n\r\n') + 4;
  while (at < raw.length) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
    if (!(size > 0)) break;
    body.push(raw.subarray(lineEnd + 2, Math.min(raw.length, lineEnd + 2 + size)));
    at = lineEnd + 2 + size + 2;
  }
  const frames: SseFrame[] = [];
  const parser = createParser({ onEvent: ({ event, id, data }) => frames.push({ event, id, data }) });
  parser.feed(Buffer.concat(body).toString('utf8'));
  return frames;
}

function expectEveryEventOnce(reader: SseReader, total: number): void {
  const events = timelineEvents<Ev>(reader);
  expect(events.map((e) => e.seq)).toEqual(range(1, total));
  expect(new Set(events.map((e) => e.event_id)).size).toBe(total);
  expect(reader.frames.filter(isNamed('done'))).toHaveLength(1);
  expect(reader.frames.at(-1)?.event).toBe('done');
}

describe('client disconnects', () => {
  it('survives half of 50 readers leaving mid-run: the run completes, the rest get everything, nothing leaks', async () => {
    const svc = await startService({ keepAliveMs: null });
    try {
      const sessionId = newSessionId();
      const url = `${svc.url}/timeline/stream/${sessionId}`;
      const readers = await Promise.all(Array.from({ length: 50 }, () => openSse(url)));
      await Promise.all(readers.map((reader) => reader.waitFor(isNamed('ready'))));
      expect(svc.service.streams.size).toBe(50);
      expect(await metric(svc.url, 'timeline_streams_open')).toBe(50);

      const events = 60;
      const run = execute(svc.url, synthetic(sessionId, { events, interval_ms: 25 }));
      let runEnded = false;
      void run.then(() => (runEnded = true));
      await Promise.all(readers.map((reader) => reader.waitFor(seqAtLeast(5))));

      const leaving = readers.filter((_, i) => i % 2 === 0);
      const staying = readers.filter((_, i) => i % 2 === 1);
      for (const reader of leaving) reader.destroy();
      // The departed streams are released while the run is still going.
      await waitUntil(() => svc.service.streams.size === 25, { label: '25 streams left' });
      expect(runEnded).toBe(false);
      expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);

      const response = await run;
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ session_id: sessionId, status: 'completed', event_count: events + 2 });

      for (const reader of staying) {
        await reader.waitFor(isNamed('done'));
        await within(reader.ended, 5000, 'the server to end the stream after done');
        expectEveryEventOnce(reader, events + 2);
      }
      expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
      await expectNoStreamLeft(svc);
    } finally {
      await svc.close();
    }
  });

  describe('while the stream is being set up', () => {
    /** A memory bus that counts subscriptions and can hold the stream's first read. */
    class SetupProbeBus extends MemoryBus {
      subscribes = 0;
      reads = 0;
      /** While set, reads wait for it (the stream is still being set up). */
      gate: Promise<void> | null = null;

      override async subscribe(sessionId: string, listener: LiveListener): Promise<Subscription> {
        this.subscribes += 1;
        return super.subscribe(sessionId, listener);
      }

      override async read(sessionId: string, afterId: string | null): Promise<LogSlice> {
        this.reads += 1;
        if (this.gate) await this.gate;
        return super.read(sessionId, afterId);
      }
    }

    it('leaks nothing when the client leaves right after sending the request', async () => {
      const bus = new SetupProbeBus();
      const maxStreams = 5;
      const svc = await startService({ keepAliveMs: null, maxStreams }, { bus });
      try {
        const port = Number(new URL(svc.url).port);
        const running = newSessionId();
        const run = execute(svc.url, synthetic(running, { events: 40, interval_ms: 10 }));
        const attempts = 30;
        for (let i = 0; i < attempts; i++) {
          // A waiting session, and one whose run is publishing while the stream is set up.
          const socket = await sendStreamRequest(port, i % 2 === 0 ? newSessionId() : running);
          socket.destroy();
          // The request reached the stream route (otherwise nothing was tested), and the next
          // one comes only then, so the attempts cannot use up MAX_STREAMS among themselves.
          await waitUntil(() => bus.subscribes === i + 1, { label: `subscription ${i + 1}` });
        }
        await expectNoStreamLeft(svc);
        expect((await run).status).toBe(200);

        // No slot was kept: the instance still takes its full MAX_STREAMS.
        const fresh = await Promise.all(range(1, maxStreams).map(() => openSse(`${svc.url}/timeline/stream/${running}`)));
        for (const reader of fresh) {
          expect(reader.status).toBe(200);
          await reader.waitFor(isNamed('done'));
        }
        await expectNoStreamLeft(svc);
      } finally {
        await svc.close();
      }
    });

    it.each([
      ['as soon as it is closed', () => new Promise<void>((resolve) => setImmediate(resolve))],
      ['a little after it is closed', () => new Promise<void>((resolve) => setTimeout(resolve, 30))],
    ])('leaks nothing when the client leaves during the first read, the read finishing %s', async (_label, settle) => {
      const bus = new SetupProbeBus();
      const svc = await startService({ keepAliveMs: null, maxStreams: 2 }, { bus });
      try {
        const port = Number(new URL(svc.url).port);
        for (let i = 0; i < 5; i++) {
          let open: () => void = () => undefined;
          bus.gate = new Promise<void>((resolve) => (open = resolve));
          const readsBefore = bus.reads;
          const socket = await sendStreamRequest(port, newSessionId());
          await waitUntil(() => bus.reads > readsBefore, { label: 'the stream route to start its first read' });
          socket.destroy();
          await within(new Promise((resolve) => socket.once('close', resolve)), 2000, 'the client socket to close');
          await settle();
          bus.gate = null;
          open();
        }
        await expectNoStreamLeft(svc);
        const reader = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`);
        expect(reader.status).toBe(200);
        await reader.waitFor(isNamed('ready'));
        reader.destroy();
        await expectNoStreamLeft(svc);
      } finally {
        await svc.close();
      }
    });
  });
});

describe('MAX_STREAMS', () => {
  it('answers 503 too_many_streams with Retry-After beyond the limit, and accepts again once a stream closes', async () => {
    const svc = await startService({ keepAliveMs: null, maxStreams: 2 });
    try {
      const waitingSession = newSessionId();
      const runSession = newSessionId();
      const first = await openSse(`${svc.url}/timeline/stream/${waitingSession}`);
      const second = await openSse(`${svc.url}/timeline/stream/${runSession}`);
      await first.waitFor(isNamed('ready'));
      await second.waitFor(isNamed('ready'));

      const refused = await fetch(`${svc.url}/timeline/stream/${newSessionId()}`);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('content-type')).toMatch(/^application\/json/);
      expect(refused.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
      expect(await refused.json()).toEqual({ error: { code: 'too_many_streams', message: expect.any(String) } });

      // A client leaving frees its slot.
      first.destroy();
      await waitUntil(() => svc.service.streams.size === 1, { label: 'the closed stream to be released' });
      const third = await openSse(`${svc.url}/timeline/stream/${waitingSession}`);
      expect(third.status).toBe(200);
      await third.waitFor(isNamed('ready'));
      expect((await fetch(`${svc.url}/timeline/stream/${newSessionId()}`)).status).toBe(503);

      // A stream the server ends (after done) frees its slot too.
      expect((await execute(svc.url, synthetic(runSession, { events: 2 }))).status).toBe(200);
      await second.waitFor(isNamed('done'));
      await second.ended;
      await waitUntil(() => svc.service.streams.size === 1, { label: 'the finished stream to be released' });
      const fourth = await openSse(`${svc.url}/timeline/stream/${newSessionId()}`);
      expect(fourth.status).toBe(200);
      await fourth.waitFor(isNamed('ready'));

      third.destroy();
      fourth.destroy();
      await expectNoStreamLeft(svc);
    } finally {
      await svc.close();
    }
  });

  it('never admits more than the limit under a burst of concurrent opens', async () => {
    const svc = await startService({ keepAliveMs: null, maxStreams: 3 });
    try {
      const sessionId = newSessionId();
      const readers = await Promise.all(range(1, 12).map(() => openSse(`${svc.url}/timeline/stream/${sessionId}`)));
      const statuses = readers.map((reader) => reader.status).sort();
      expect(statuses).toEqual([...Array(3).fill(200), ...Array(9).fill(503)]);
      for (const reader of readers) reader.destroy();
      await expectNoStreamLeft(svc);
    } finally {
      await svc.close();
    }
  });
});

describe('slow readers (MAX_BUFFERED_BYTES, SLOW_READER_TIMEOUT_MS)', () => {
  it('holds at most MAX_BUFFERED_BYTES for a reader that stops reading, then catches it up from the log with nothing lost', async () => {
    const maxBufferedBytes = 64 * 1024;
    const bus = new MemoryBus();
    const svc = await startService({ keepAliveMs: null, maxBufferedBytes }, { bus });
    // Readers on a listener that shows the server's side of their sockets.
    const watched = await listenWatchingSockets(svc.service);
    try {
      const sessionId = newSessionId();
      const url = `${watched.url}/timeline/stream/${sessionId}`;
      const slow = await openReady(url);
      const normal = await openReady(url);
      const [slowSide, normalSide] = watched.sockets;
      expect(await metric(svc.url, 'timeline_slow_readers_caught_up_total')).toBe(0);

      // What the process holds unsent for each reader, after every event's fan-out (this
      // listener comes last) and every millisecond while the slow one catches up.
      let peakSlow = 0;
      let peakNormal = 0;
      const sample = () => {
        peakSlow = Math.max(peakSlow, slowSide.writableLength);
        peakNormal = Math.max(peakNormal, normalSide.writableLength);
      };
      const sampler = await bus.subscribe(sessionId, { onEntry: sample });
      const ticker = setInterval(sample, 1);

      // ~18 MB in all, far more than the socket buffers of a reader that stopped reading.
      const events = 300;
      slow.pause();
      const response = await execute(svc.url, synthetic(sessionId, { events, payload_bytes: 60000, interval_ms: 1 }));
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ status: 'completed', event_count: events + 2 });
      await normal.waitFor(isNamed('done'), 20000);
      expectEveryEventOnce(normal, events + 2);
      // The stalled reader was left behind, not cut, and not sent everything.
      expect(slow.frames.some(isNamed('done'))).toBe(false);
      expect(peakSlow).toBeGreaterThan(maxBufferedBytes / 2);
      expect(peakSlow).toBeLessThanOrEqual(maxBufferedBytes);

      // Reading again: it catches up from the log, every event once and in order, done last.
      slow.resume();
      await slow.waitFor(isNamed('done'), 20000);
      await within(slow.ended, 5000, 'the server to end the caught-up stream after done');
      clearInterval(ticker);
      sampler.unsubscribe();
      expectEveryEventOnce(slow, events + 2);
      expect(peakSlow).toBeLessThanOrEqual(maxBufferedBytes);
      expect(peakNormal).toBeLessThanOrEqual(maxBufferedBytes);
      expect(await metric(svc.url, 'timeline_slow_readers_caught_up_total')).toBeGreaterThanOrEqual(1);
      expect(await metric(svc.url, 'timeline_slow_readers_closed_total')).toBe(0);
      await expectNoStreamLeft(svc);
    } finally {
      await watched.close();
      await svc.close();
    }
  });

  it('closes a reader stalled longer than SLOW_READER_TIMEOUT_MS in its replay, counts it, and a Last-Event-ID resume gets the rest exactly once', async () => {
    const svc = await startService({ keepAliveMs: null, slowReaderTimeoutMs: 500 });
    try {
      const sessionId = newSessionId();
      const url = `${svc.url}/timeline/stream/${sessionId}`;
      const witness = await openSse(url);
      await witness.waitFor(isNamed('ready'));
      // ~36 MB in all; ~21 MB retained when the stalled reader joins, far more than its socket
      // buffers take, so its replay stalls while the run publishes.
      const events = 600;
      const run = execute(svc.url, synthetic(sessionId, { events, payload_bytes: 60000, interval_ms: 5 }));
      let runEnded = false;
      void run.then(() => (runEnded = true));
      await witness.waitFor(seqAtLeast(350), 20000, 'a big log');

      const port = Number(new URL(svc.url).port);
      const stalled = await sendStreamRequest(port, sessionId);
      stalled.pause();
      const received: Buffer[] = [];
      const closed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.on('error', () => undefined); // a reset after the close ends the reading, nothing more
      await waitUntil(async () => (await metric(svc.url, 'timeline_slow_readers_closed_total')) >= 1, {
        timeoutMs: 20000,
        label: 'the reader stalled in its replay to be closed',
      });
      // Its slot and what the feed held are released while the run is still going.
      await waitUntil(() => svc.service.streams.size === 1, { label: 'the closed stream to be released' });
      expect(runEnded).toBe(false);

      stalled.on('data', (chunk: Buffer) => received.push(chunk));
      stalled.resume();
      await within(closed, 10000, 'the closed socket to close');
      const frames = framesOfRawResponse(Buffer.concat(received));
      expect(frames[0]?.event).toBe('ready');
      expect(frames.some(isNamed('done'))).toBe(false);
      const got = frames.filter((frame) => frame.event === undefined).map((frame) => JSON.parse(frame.data) as Ev);
      expect(got.length).toBeGreaterThan(0);
      expect(got.map((e) => e.seq)).toEqual(range(1, got.length));

      const response = await run;
      expect(response.body).toMatchObject({ status: 'completed', event_count: events + 2 });
      await witness.waitFor(isNamed('done'), 20000);
      expectEveryEventOnce(witness, events + 2);

      const resumed = await openSse(url, { headers: { 'Last-Event-ID': got.at(-1)!.event_id } });
      expect(resumed.status).toBe(200);
      await within(resumed.ended, 20000, 'the resumed stream to end after done');
      expect(resumed.frames.filter((f) => f.event !== undefined).map((f) => f.event)).toEqual(['ready', 'done']);
      const rest = timelineEvents<Ev>(resumed);
      expect([...got, ...rest].map((e) => e.event_id)).toEqual(timelineEvents<Ev>(witness).map((e) => e.event_id));
      expect(await metric(svc.url, 'timeline_slow_readers_closed_total')).toBe(1);
      await expectNoStreamLeft(svc);
    } finally {
      await svc.close();
    }
  });

  it('replays a backlog larger than MAX_BUFFERED_BYTES in full to a reader that keeps reading', async () => {
    const svc = await startService({ keepAliveMs: null, maxBufferedBytes: 64 * 1024 });
    try {
      const sessionId = newSessionId();
      // ~6 MB retained, replayed to a late reader that reads as fast as it can.
      const events = 100;
      expect((await execute(svc.url, synthetic(sessionId, { events, payload_bytes: 60000 }))).status).toBe(200);
      const late = await openSse(`${svc.url}/timeline/stream/${sessionId}`);
      expect(late.status).toBe(200);
      await within(late.ended, 20000, 'the replay to end after done');
      expect(await metric(svc.url, 'timeline_slow_readers_closed_total')).toBe(0);
      expectEveryEventOnce(late, events + 2);
      await expectNoStreamLeft(svc);
    } finally {
      await svc.close();
    }
  });
});
