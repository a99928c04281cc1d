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
  /** Owned by `StreamTimers`: the tick of the stream's next keep-alive check, `-1` if none. */
  keepAliveDueTick: number;
  /** Writes a keep-alive comment (which sets `lastWriteTick`). */
  ping(): void;
  /** The session had no run within the idle timeout: the stream says so and ends. */
  expire(): void;
}

export interface StreamTimersOptions {
  /** Longest silence on an idle stream before `: ping`; `null`: no pings. */
  keepAliveMs: number | null;
  /** How long a stream waits for its session's run before it expires; `null`: forever. */
  idleTimeoutMs: number | null;
  /** Monotonic clock in ms, for tests. Defaults to `performance.now`. */
  now?: () => number;
}

/**
 * Keep-alive pings and idle expiry for every open stream of the instance, on one ticker.
 * A timeout and an interval per stream were a large part of a stream's memory and of the CPU
 * to open one; here a stream costs a place in two sets and a number it updates on each write.
 *
 * Pings: a timing wheel. A stream is filed under the tick at which it will have been silent
 * for a keep-alive interval; when that tick comes, it is pinged if it wrote nothing since,
 * else filed again after its last write. Each stream's pings follow its own activity, so the
 * instance's streams are not all pinged in the same tick.
 * Expiry: waiting streams in open order, which is also deadline order.
 */
export class StreamTimers<S extends TimedStream = TimedStream> {
  /** Ticks since the timers started, derived from the clock so a late timer catches up. */
  tick = 0;
  private readonly periodMs: number;
  /** Ticks from a stream's last write to its keep-alive check (0: no pings). */
  private readonly pingTicks: number;
  /** Slot `t % slots.length`: the streams whose keep-alive check is due at tick `t`. */
  private readonly slots: Array<Set<S> | undefined>;
  /** Waiting streams and when they expire, in insertion (hence deadline) order. */
  private readonly waiting = new Map<S, number>();
  private readonly idleTimeoutMs: number | null;
  private readonly now: () => number;
  private origin = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: StreamTimersOptions) {
    const { keepAliveMs, idleTimeoutMs } = options;
    this.idleTimeoutMs = idleTimeoutMs;
    this.now = options.now ?? (() => performance.now());
    const shortest = Math.min(keepAliveMs ?? Infinity, idleTimeoutMs ?? Infinity);
    this.periodMs = Math.max(1, Math.floor(shortest / TICKS_PER_INTERVAL));
    // A stream checked `pingTicks` after its last write was silent for at most
    // (pingTicks + 1) periods: the write may have come a period after the tick it recorded.
    this.pingTicks = keepAliveMs === null ? 0 : Math.max(1, Math.floor(keepAliveMs / this.periodMs) - 1);
    this.slots = new Array(this.pingTicks + 1);
  }

  private get enabled(): boolean {
    return this.pingTicks > 0 || this.idleTimeoutMs !== null;
  }

  /** Starts pinging `stream` while it is idle; with `waiting`, expires it unless `runStarted` comes in time. */
  add(stream: S, waiting: boolean): void {
    if (!this.enabled) return;
    this.timer ??= this.start();
    if (this.pingTicks > 0) this.file(stream, stream.lastWriteTick + this.pingTicks);
    if (waiting && this.idleTimeoutMs !== null) this.waiting.set(stream, this.now() + this.idleTimeoutMs);
  }

  /** The stream's session has a run: it no longer expires. */
  runStarted(stream: S): void {
    this.waiting.delete(stream);
  }

  remove(stream: S): void {
    this.waiting.delete(stream);
    if (stream.keepAliveDueTick >= 0) {
      this.slots[stream.keepAliveDueTick % this.slots.length]?.delete(stream);
      stream.keepAliveDueTick = -1;
    }
  }

  /** Stops the ticker and forgets every stream. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const slot of this.slots) {
      for (const stream of slot ?? []) stream.keepAliveDueTick = -1;
      slot?.clear();
    }
    this.waiting.clear();
  }

  private start(): NodeJS.Timeout {
    this.origin = this.now() - this.tick * this.periodMs;
    const timer = setInterval(() => this.onTimer(), this.periodMs);
    // Streams hold the process open, not their timers.
    timer.unref();
    return timer;
  }

  private onTimer(): void {
    const target = Math.floor((this.now() - this.origin) / this.periodMs);
    // After a long stall every slot is due once; no need to walk each missed tick.
    if (target - this.tick > this.slots.length) this.tick = target - this.slots.length;
    while (this.tick < target) {
      this.tick += 1;
      if (this.pingTicks > 0) this.checkKeepAlive(this.tick);
    }
    if (this.waiting.size > 0) this.expireDue(this.now());
  }

  private checkKeepAlive(tick: number): void {
    const slot = this.slots[tick % this.slots.length];
    if (!slot || slot.size === 0) return;
    // Refiling never targets this slot (due ticks are 1..pingTicks ahead), so it is safe
    // to walk it and clear it afterwards.
    for (const stream of slot) {
      if (tick - stream.lastWriteTick >= this.pingTicks) stream.ping();
      this.file(stream, stream.lastWriteTick + this.pingTicks);
    }
    slot.clear();
  }

  /** Files `stream` for a check at `dueTick`, which is at most `pingTicks` ahead (writes record past ticks). */
  private file(stream: S, dueTick: number): void {
    const due = Math.max(dueTick, this.tick + 1);
    stream.keepAliveDueTick = due;
    const index = due % this.slots.length;
    (this.slots[index] ??= new Set()).add(stream);
  }

  private expireDue(now: number): void {
    for (const [stream, expiresAt] of this.waiting) {
      if (expiresAt > now) break;
      this.waiting.delete(stream);
      stream.expire();
    }
  }
}
