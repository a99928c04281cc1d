import { performance } from 'node:perf_hooks';

/**
 * Ticks per keep-alive interval: how finely pings are placed. A ping goes out once a stream
 * was silent for between 13/16 and 16/16 of `KEEPALIVE_MS` (plus any event-loop delay).
 */
const TICKS_PER_INTERVAL = 16;

/** What the timers need of an open stream. */
export interface TimedStream {
  /** `StreamTimers.tick` when the stream last wrote; the stream sets it on every write. */
  lastWriteTick: number;
  /** Writes a keep-alive comment (which sets `lastWriteTick`). */
  ping(): void;
  /** The session had no run within the idle timeout: the stream says so and ends. */
  expire(): void;
  /** The reader stayed stalled (see `stalled`) for the slow-reader timeout: the stream is closed. */
  closeStalled(): void;
}

export interface StreamTimersOptions {
  /** Longest silence on an idle stream before `: ping`; `null`: no pings. */
  keepAliveMs: number | null;
  /** How long a stream waits for its session's run before it expires; `null`: forever. */
  idleTimeoutMs: number | null;
  /** How long a reader may stay stalled before its stream is closed; `null`: forever. */
  slowReaderTimeoutMs: number | null;
  /** Monotonic clock in ms, for tests. Defaults to `performance.now`. */
  now?: () => number;
}

/**
 * Keep-alive pings, idle expiry and the slow-reader timeout for every open stream of the
 * instance, on one ticker. A timeout and an interval per stream were a large part of a
 * stream's memory and of the CPU to open one (better-sse's own keep-alive is an interval per
 * session); here a stream costs a place in a set or two and a number it updates on each write.
 *
 * Pings: each tick pings the streams silent for `pingTicks`. Each stream's pings follow its own
 * activity, so the instance's streams are not all pinged in the same tick. Walking them all is
 * a comparison per stream per tick: 10,000 streams cost well under a millisecond a tick.
 * Expiry and the slow-reader timeout: deadlines in insertion order, which is deadline order
 * (one timeout each), so a tick looks only at the ones due.
 */
export class StreamTimers<S extends TimedStream = TimedStream> {
  /** Ticks since the timers started, derived from the clock so a late timer catches up. */
  tick = 0;
  private readonly periodMs: number;
  /** Ticks of silence after which a stream is pinged (0: no pings). */
  private readonly pingTicks: number;
  /** The streams pinged while idle. */
  private readonly pinged = new Set<S>();
  /** Waiting streams and when they expire, in insertion (hence deadline) order. */
  private readonly waiting = new Map<S, number>();
  /** Stalled streams and when they are closed, in insertion (hence deadline) order. */
  private readonly stalledStreams = new Map<S, number>();
  private readonly idleTimeoutMs: number | null;
  private readonly slowReaderTimeoutMs: number | null;
  private readonly now: () => number;
  private origin = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: StreamTimersOptions) {
    const { keepAliveMs, idleTimeoutMs, slowReaderTimeoutMs } = options;
    this.idleTimeoutMs = idleTimeoutMs;
    this.slowReaderTimeoutMs = slowReaderTimeoutMs;
    this.now = options.now ?? (() => performance.now());
    const shortest = Math.min(keepAliveMs ?? Infinity, idleTimeoutMs ?? Infinity, slowReaderTimeoutMs ?? Infinity);
    this.periodMs = Math.max(1, Math.floor(shortest / TICKS_PER_INTERVAL));
    // A stream checked `pingTicks` after its last write was silent for at most
    // (pingTicks + 1) periods: the write may have come a period after the tick it recorded.
    this.pingTicks = keepAliveMs === null ? 0 : Math.max(1, Math.floor(keepAliveMs / this.periodMs) - 1);
  }

  private get enabled(): boolean {
    return this.pingTicks > 0 || this.idleTimeoutMs !== null;
  }

  /** Starts pinging `stream` while it is idle; with `waiting`, expires it unless `runStarted` comes in time. */
  add(stream: S, waiting: boolean): void {
    if (this.closed || !this.enabled) return;
    this.timer ??= this.start();
    if (this.pingTicks > 0) this.pinged.add(stream);
    if (waiting && this.idleTimeoutMs !== null) this.waiting.set(stream, this.now() + this.idleTimeoutMs);
  }

  /** The stream's session has a run: it no longer expires. */
  runStarted(stream: S): void {
    this.waiting.delete(stream);
  }

  /**
   * The stream's reader stopped taking what it is sent: unless `drained` comes within the
   * slow-reader timeout, the stream is closed. A stream already stalled keeps its deadline.
   */
  stalled(stream: S): void {
    if (this.closed || this.slowReaderTimeoutMs === null || this.stalledStreams.has(stream)) return;
    this.timer ??= this.start();
    this.stalledStreams.set(stream, this.now() + this.slowReaderTimeoutMs);
  }

  /** The stream's reader took everything it was sent. */
  drained(stream: S): void {
    this.stalledStreams.delete(stream);
  }

  remove(stream: S): void {
    this.waiting.delete(stream);
    this.pinged.delete(stream);
    this.stalledStreams.delete(stream);
  }

  /** Stops the ticker and forgets every stream. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.pinged.clear();
    this.waiting.clear();
    this.stalledStreams.clear();
  }

  private start(): NodeJS.Timeout {
    this.origin = this.now() - this.tick * this.periodMs;
    const timer = setInterval(() => this.onTimer(), this.periodMs);
    // Streams hold the process open, not their timers.
    timer.unref();
    return timer;
  }

  private onTimer(): void {
    // From the clock, not counted: after a stall, an idle stream is pinged once, at once.
    this.tick = Math.floor((this.now() - this.origin) / this.periodMs);
    if (this.pingTicks > 0) {
      for (const stream of this.pinged) {
        if (this.tick - stream.lastWriteTick >= this.pingTicks) stream.ping();
      }
    }
    if (this.waiting.size > 0) this.expireDue(this.now());
    if (this.stalledStreams.size > 0) this.closeStalledDue(this.now());
  }

  private expireDue(now: number): void {
    for (const [stream, expiresAt] of this.waiting) {
      if (expiresAt > now) break;
      this.waiting.delete(stream);
      stream.expire();
    }
  }

  private closeStalledDue(now: number): void {
    for (const [stream, closesAt] of this.stalledStreams) {
      if (closesAt > now) break;
      this.stalledStreams.delete(stream);
      stream.closeStalled();
    }
  }
}
