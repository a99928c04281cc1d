import type { Logger } from 'pino';
import type { Metrics } from '../metrics';
import { StreamTimers, type TimedStream } from './stream-timers';

/** An open stream, as the registry sees it. */
export interface RegisteredStream extends TimedStream {
  /** Ends the stream at shutdown, asking its client to reconnect after `retryMs`. */
  redirect(retryMs: number): void;
}

export interface StreamRegistryOptions {
  /** `MAX_STREAMS`: open streams (and streams being set up) this instance takes. */
  maxStreams: number;
  /** `RETRY_MS`: the `retry:` of each stream's first frame, and the ceiling of the shutdown hint. */
  retryMs: number;
  /** `KEEPALIVE_MS`; `null`: no pings. */
  keepAliveMs: number | null;
  /** `STREAM_IDLE_TIMEOUT_MS`; `null`: a waiting stream never expires. */
  idleTimeoutMs: number | null;
  /** `MAX_BUFFERED_BYTES`: per reader, the most unsent data the process holds for it. */
  maxBufferedBytes: number;
  /** `SLOW_READER_TIMEOUT_MS`: how long a reader may stay stalled before its stream is closed. */
  slowReaderTimeoutMs: number;
  /** `timeline_streams_open` reads the registry; the slow-reader counters are counted here. */
  metrics: Metrics;
  log: Logger;
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
 * The streams of this instance, and the one place a stream's life is counted: a slot is taken
 * (`tryReserve`) before any await, then either given back (`release`: the stream never opened)
 * or turned into an open stream (`open`), which `close` removes exactly once. `MAX_STREAMS`
 * bounds `size`, and `timeline_streams_open` reports `size` when scraped, so the two always
 * agree. Also: keep-alive, idle expiry and the slow-reader timeout (one ticker for all
 * streams), and handing the streams over at shutdown.
 */
export class StreamRegistry {
  /** Keep-alive, idle expiry and slow-reader timeout; streams record its `tick` on each write. */
  readonly timers: StreamTimers<RegisteredStream>;
  readonly retryMs: number;
  readonly maxBufferedBytes: number;
  readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly streams = new Set<RegisteredStream>();
  private readonly maxStreams: number;
  private reserved = 0;
  private draining = false;

  constructor(options: StreamRegistryOptions) {
    this.maxStreams = options.maxStreams;
    this.retryMs = options.retryMs;
    this.maxBufferedBytes = options.maxBufferedBytes;
    this.metrics = options.metrics;
    this.log = options.log;
    this.timers = new StreamTimers(options);
    this.metrics.countStreams(() => this.size);
  }

  /** Streams open or being set up: what `MAX_STREAMS` bounds and `timeline_streams_open` reports. */
  get size(): number {
    return this.streams.size + this.reserved;
  }

  /** Takes a slot before any await, so concurrent requests cannot overshoot the limit. */
  tryReserve(): boolean {
    if (this.size >= this.maxStreams) return false;
    this.reserved += 1;
    return true;
  }

  /** Gives back a slot whose stream never opened. */
  release(): void {
    this.reserved -= 1;
  }

  /**
   * Turns a reservation into an open stream. During a shutdown the stream is handed over at
   * once: it was still being set up when the others were.
   */
  open(stream: RegisteredStream): void {
    this.reserved -= 1;
    this.streams.add(stream);
    if (this.draining) stream.redirect(handoverRetryMs(this.retryMs));
  }

  /**
   * The stream's head is out: it is pinged while idle and, when its session is still
   * `waiting` for a run, expired unless `runStarted` comes within the idle timeout.
   */
  started(stream: RegisteredStream, waiting: boolean): void {
    if (!this.draining) this.timers.add(stream, waiting);
  }

  /** The stream's session has a run: it no longer expires. */
  runStarted(stream: RegisteredStream): void {
    this.timers.runStarted(stream);
  }

  /** The stream is gone (its response closed): called once per opened stream. */
  close(stream: RegisteredStream): void {
    this.streams.delete(stream);
    this.timers.remove(stream);
  }

  /** A live reader that fell `MAX_BUFFERED_BYTES` behind caught up from the log. */
  slowReaderCaughtUp(): void {
    this.metrics.slowReadersCaughtUp.inc();
  }

  /** A reader stalled longer than `SLOW_READER_TIMEOUT_MS` is being closed. */
  slowReaderClosed(): void {
    this.metrics.slowReadersClosed.inc();
  }

  /** Shutdown: ends every open stream, and each one opened from now on, with a short `retry:`. */
  drain(): void {
    this.draining = true;
    this.timers.close();
    for (const stream of [...this.streams]) stream.redirect(handoverRetryMs(this.retryMs));
  }
}
