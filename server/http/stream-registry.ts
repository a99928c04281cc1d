import { StreamTimers, type TimedStream } from './stream-timers';

/** An open stream, as the registry sees it. */
export interface RegisteredStream extends TimedStream {
  /** Ends the stream at shutdown, asking its client to reconnect after `retryMs`. */
  redirect(retryMs: number): void;
}

export interface StreamRegistryOptions {
  /** `MAX_STREAMS`: open streams (and streams being set up) this instance takes. */
  maxStreams: number;
  /** `RETRY_MS`, the ceiling of the shutdown hint. */
  retryMs: number;
  /** `KEEPALIVE_MS`; `null`: no pings. */
  keepAliveMs: number | null;
  /** `STREAM_IDLE_TIMEOUT_MS`; `null`: a waiting stream never expires. */
  idleTimeoutMs: number | null;
}

/**
 * Bounds of the reconnection delay handed to readers when an instance shuts down: soon enough
 * that a client resumes on another instance well before the usual `RETRY_MS`, spread so that
 * the instance's readers (up to `MAX_STREAMS` of them) do not all land on the remaining
 * instances, and on Redis, in the same millisecond.
 */
export const HANDOVER_RETRY_MIN_MS = 250;
export const HANDOVER_RETRY_MAX_MS = 1000;

/**
 * The `retry:` sent to a reader at shutdown: uniform in
 * [`HANDOVER_RETRY_MIN_MS`, `HANDOVER_RETRY_MAX_MS`), never longer than the configured `RETRY_MS`.
 */
export function handoverRetryMs(retryMs: number, random: () => number = Math.random): number {
  const spread = HANDOVER_RETRY_MIN_MS + Math.floor(random() * (HANDOVER_RETRY_MAX_MS - HANDOVER_RETRY_MIN_MS));
  return Math.min(retryMs, spread);
}

/**
 * The streams open on this instance: for `MAX_STREAMS`, metrics, their keep-alive and idle
 * expiry (one ticker for all of them), and handing them over at shutdown.
 */
export class StreamRegistry {
  /** Keep-alive and idle expiry; streams record its `tick` on each write. */
  readonly timers: StreamTimers<RegisteredStream>;
  private readonly streams = new Set<RegisteredStream>();
  private readonly maxStreams: number;
  private readonly retryMs: number;
  private reserved = 0;
  private draining = false;

  constructor(options: StreamRegistryOptions) {
    this.maxStreams = options.maxStreams;
    this.retryMs = options.retryMs;
    this.timers = new StreamTimers(options);
  }

  get size(): number {
    return this.streams.size + this.reserved;
  }

  /** Takes a slot before any await, so concurrent requests cannot overshoot the limit. */
  tryReserve(): boolean {
    if (this.size >= this.maxStreams) return false;
    this.reserved += 1;
    return true;
  }

  release(): void {
    this.reserved -= 1;
  }

  /**
   * Turns a reservation into an open stream, pinged while idle and, when its session is still
   * `waiting` for a run, expired unless `runStarted` comes within the idle timeout. During a
   * shutdown the stream is ended at once: it was still being set up when the others were ended.
   */
  add(stream: RegisteredStream, waiting: boolean): void {
    this.reserved -= 1;
    this.streams.add(stream);
    if (this.draining) stream.redirect(handoverRetryMs(this.retryMs));
    else this.timers.add(stream, waiting);
  }

  /** The stream's session has a run: it no longer expires. */
  runStarted(stream: RegisteredStream): void {
    this.timers.runStarted(stream);
  }

  remove(stream: RegisteredStream): void {
    this.streams.delete(stream);
    this.timers.remove(stream);
  }

  /** Shutdown: ends every open stream, and each one opened from now on, with a short `retry:`. */
  drain(): void {
    this.draining = true;
    this.timers.close();
    for (const stream of [...this.streams]) stream.redirect(handoverRetryMs(this.retryMs));
  }
}
