/** How a dropped stream is re-established. */
export interface ReconnectOptions {
  /**
   * Connection attempts in a row that may fail (refused, 5xx, dropped before `ready`) before
   * the run fails with `retries_exhausted`. An attempt that reaches `ready` resets the count.
   * Defaults to `10`.
   */
  maxAttempts?: number;
  /** Base delay until the server sends `retry:` (which then replaces it). Defaults to `1000`. */
  initialDelayMs?: number;
  /** Cap on the doubling delay, before up to 50 % jitter is added. Defaults to `30000`. */
  maxDelayMs?: number;
}

export const DEFAULT_RECONNECT: Required<ReconnectOptions> = {
  maxAttempts: 10,
  initialDelayMs: 1000,
  maxDelayMs: 30000,
};

/**
 * The wait before reconnect attempt `attempt` (1-based): the server's `retry:` (`baseMs`)
 * doubled per failed attempt up to `maxDelayMs`, plus up to 50 % jitter so clients cut off
 * together do not come back together. Never sooner than `baseMs`: that is the server's ask.
 */
export function reconnectDelay(attempt: number, baseMs: number, maxDelayMs: number, random: () => number): number {
  const exponential = Math.max(baseMs, Math.min(maxDelayMs, baseMs * 2 ** (attempt - 1)));
  return Math.round(exponential + (random() * exponential) / 2);
}

/**
 * `Retry-After` (delta seconds or an HTTP date) in milliseconds; `null` when absent or unreadable.
 * https://www.rfc-editor.org/rfc/rfc9110#field.retry-after
 */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | null {
  if (header === null) return null;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // An HTTP date names a weekday and month; a bare `-1` would otherwise parse as a year.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects with `onAbort()` as soon as `signal` fires. */
export function sleep(ms: number, signal: AbortSignal, onAbort: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(onAbort());
      return;
    }
    const abort = () => {
      clearTimeout(timer);
      reject(onAbort());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
}
