import { StreamTimers, type TimedStream } from '../../server/http/stream-timers';

/** A stream that records when it wrote (the clock is jest's fake one). */
class RecordingStream implements TimedStream {
  lastWriteTick: number;
  readonly writes: number[] = [];
  readonly pings: number[] = [];
  expiredAt: number | null = null;
  closedAt: number | null = null;

  constructor(private readonly clock: { readonly tick: number }) {
    this.lastWriteTick = clock.tick;
    this.writes.push(Date.now());
  }

  write(): void {
    this.lastWriteTick = this.clock.tick;
    this.writes.push(Date.now());
  }

  ping(): void {
    this.pings.push(Date.now());
    this.write();
  }

  expire(): void {
    this.expiredAt = Date.now();
  }

  closeStalled(): void {
    this.closedAt = Date.now();
  }
}

const KEEPALIVE_MS = 1600;
const IDLE_MS = 8000;
const STALL_MS = 4000;

function timers(
  keepAliveMs: number | null,
  idleTimeoutMs: number | null,
  slowReaderTimeoutMs: number | null = null,
): StreamTimers<RecordingStream> {
  return new StreamTimers({ keepAliveMs, idleTimeoutMs, slowReaderTimeoutMs, now: () => Date.now() });
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]);
}

describe('StreamTimers', () => {
  let subject: StreamTimers<RecordingStream> | null = null;
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    subject?.close();
    subject = null;
    jest.useRealTimers();
  });

  it('pings an idle stream so it is never silent longer than KEEPALIVE_MS, and not much sooner', () => {
    subject = timers(KEEPALIVE_MS, null);
    const stream = new RecordingStream(subject);
    subject.add(stream, false);
    jest.advanceTimersByTime(10 * KEEPALIVE_MS);
    expect(stream.pings.length).toBeGreaterThanOrEqual(10);
    for (const gap of gaps(stream.writes)) {
      expect(gap).toBeLessThanOrEqual(KEEPALIVE_MS);
      expect(gap).toBeGreaterThanOrEqual((13 / 16) * KEEPALIVE_MS);
    }
  });

  it('sends no ping while the stream writes often enough, and pings within KEEPALIVE_MS of its last write', () => {
    subject = timers(KEEPALIVE_MS, null);
    const stream = new RecordingStream(subject);
    subject.add(stream, false);
    for (let i = 0; i < 20; i++) {
      jest.advanceTimersByTime(KEEPALIVE_MS / 2 + 37);
      stream.write();
    }
    expect(stream.pings).toEqual([]);
    const lastWrite = Date.now();
    jest.advanceTimersByTime(KEEPALIVE_MS);
    expect(stream.pings).toHaveLength(1);
    expect(stream.pings[0] - lastWrite).toBeLessThanOrEqual(KEEPALIVE_MS);
  });

  it('spreads the pings of streams opened at different times over the interval instead of one burst', () => {
    subject = timers(KEEPALIVE_MS, null);
    const streams: RecordingStream[] = [];
    for (let i = 0; i < 1600; i++) {
      const stream = new RecordingStream(subject);
      subject.add(stream, false);
      streams.push(stream);
      jest.advanceTimersByTime(1);
    }
    jest.advanceTimersByTime(3 * KEEPALIVE_MS);
    const perInstant = new Map<number, number>();
    for (const stream of streams) {
      for (const at of stream.pings) perInstant.set(at, (perInstant.get(at) ?? 0) + 1);
    }
    // A tick is a sixteenth of the interval and an idle stream is pinged every 15 ticks: the
    // streams opened in one tick share a ping, at most two such groups land on the same tick.
    expect(perInstant.size).toBeGreaterThanOrEqual(15);
    expect(Math.max(...perInstant.values())).toBeLessThanOrEqual(2 * (1600 / 16));
    expect(streams.every((stream) => stream.pings.length >= 3)).toBe(true);
  });

  it('expires a waiting stream after the idle timeout (a sixteenth late at most), unless its run started', () => {
    subject = timers(null, IDLE_MS);
    const waiting = new RecordingStream(subject);
    const started = new RecordingStream(subject);
    const running = new RecordingStream(subject);
    const openedAt = Date.now();
    subject.add(waiting, true);
    subject.add(started, true);
    subject.add(running, false);
    jest.advanceTimersByTime(IDLE_MS / 2);
    subject.runStarted(started);
    jest.advanceTimersByTime(IDLE_MS / 2 - 1);
    expect(waiting.expiredAt).toBeNull();
    jest.advanceTimersByTime(IDLE_MS / 16 + 1);
    expect(waiting.expiredAt).not.toBeNull();
    expect(waiting.expiredAt! - openedAt).toBeGreaterThanOrEqual(IDLE_MS);
    jest.advanceTimersByTime(10 * IDLE_MS);
    expect(started.expiredAt).toBeNull();
    expect(running.expiredAt).toBeNull();
    expect(waiting.pings).toEqual([]);
  });

  it('forgets a removed stream: no ping, no expiry, no close', () => {
    subject = timers(KEEPALIVE_MS, IDLE_MS, STALL_MS);
    const stream = new RecordingStream(subject);
    subject.add(stream, true);
    subject.stalled(stream);
    jest.advanceTimersByTime(KEEPALIVE_MS / 2);
    subject.remove(stream);
    jest.advanceTimersByTime(2 * IDLE_MS);
    expect(stream.pings).toEqual([]);
    expect(stream.expiredAt).toBeNull();
    expect(stream.closedAt).toBeNull();
  });

  it('closes a stream stalled for the slow-reader timeout (a sixteenth late at most), unless it drained', () => {
    subject = timers(null, null, STALL_MS);
    const stalled = new RecordingStream(subject);
    const drained = new RecordingStream(subject);
    const restalled = new RecordingStream(subject);
    for (const stream of [stalled, drained, restalled]) subject.add(stream, false);
    const stalledAt = Date.now();
    subject.stalled(stalled);
    subject.stalled(drained);
    subject.stalled(restalled);
    jest.advanceTimersByTime(STALL_MS / 2);
    // Stalled again while stalled: the first deadline holds.
    subject.stalled(stalled);
    subject.drained(drained);
    subject.drained(restalled);
    subject.stalled(restalled);
    const restalledAt = Date.now();
    jest.advanceTimersByTime(STALL_MS / 2 - 1);
    expect(stalled.closedAt).toBeNull();
    jest.advanceTimersByTime(STALL_MS / 16 + 1);
    expect(stalled.closedAt! - stalledAt).toBeGreaterThanOrEqual(STALL_MS);
    expect(restalled.closedAt).toBeNull();
    jest.advanceTimersByTime(STALL_MS / 2);
    expect(restalled.closedAt! - restalledAt).toBeGreaterThanOrEqual(STALL_MS);
    jest.advanceTimersByTime(10 * STALL_MS);
    expect(drained.closedAt).toBeNull();
  });

  it('starts its ticker for a stalled stream even with pings and idle expiry off, and forgets a removed one', () => {
    subject = timers(null, null, STALL_MS);
    const removed = new RecordingStream(subject);
    const kept = new RecordingStream(subject);
    subject.add(removed, true);
    subject.add(kept, true);
    expect(jest.getTimerCount()).toBe(0);
    subject.stalled(removed);
    subject.stalled(kept);
    expect(jest.getTimerCount()).toBe(1);
    subject.remove(removed);
    jest.advanceTimersByTime(2 * STALL_MS);
    expect(removed.closedAt).toBeNull();
    expect(kept.closedAt).not.toBeNull();
    expect(kept.pings).toEqual([]);
    expect(kept.expiredAt).toBeNull();
  });

  it('runs no timer at all when both are off (KEEPALIVE_MS=0, STREAM_IDLE_TIMEOUT_MS=0)', () => {
    subject = timers(null, null);
    const stream = new RecordingStream(subject);
    subject.add(stream, true);
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(10 * IDLE_MS);
    expect(stream.pings).toEqual([]);
    expect(stream.expiredAt).toBeNull();
  });

  it('catches up after the event loop stalled: an idle stream is pinged at the first tick after', () => {
    subject = timers(KEEPALIVE_MS, null);
    const stream = new RecordingStream(subject);
    subject.add(stream, false);
    jest.advanceTimersByTime(KEEPALIVE_MS / 4);
    // A stall longer than several intervals: the clock jumps, no timer ran meanwhile.
    jest.setSystemTime(Date.now() + 5 * KEEPALIVE_MS);
    jest.advanceTimersByTime(KEEPALIVE_MS / 16);
    expect(stream.pings).toHaveLength(1);
  });
});
