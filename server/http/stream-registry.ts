/** Ends one open stream at shutdown, asking its client to reconnect after `retryMs`. */
export type StreamCloser = (retryMs: number) => void;

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

/** The streams open on this instance: for `MAX_STREAMS`, metrics, and handing them over at shutdown. */
export class StreamRegistry {
  private readonly closers = new Set<StreamCloser>();
  private reserved = 0;
  private draining = false;

  /** `retryMs` is the configured `RETRY_MS`, the ceiling of the shutdown hint. */
  constructor(
    private readonly maxStreams: number,
    private readonly retryMs = 2000,
  ) {}

  get size(): number {
    return this.closers.size + this.reserved;
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
   * Turns a reservation into an open stream; returns its removal function. During a shutdown
   * the stream is ended at once: it was still being set up when the others were ended.
   */
  add(close: StreamCloser): () => void {
    this.reserved -= 1;
    this.closers.add(close);
    if (this.draining) close(handoverRetryMs(this.retryMs));
    return () => this.closers.delete(close);
  }

  /** Shutdown: ends every open stream, and each one opened from now on, with a short `retry:`. */
  drain(): void {
    this.draining = true;
    for (const close of [...this.closers]) close(handoverRetryMs(this.retryMs));
  }
}
