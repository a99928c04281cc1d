import type { DoneRecord, HttpErrorCode, RunErrorCode } from './types.js';

/**
 * Codes the SDK itself gives a {@link TimelineError}. Every other code is the server's
 * `error.code` (`invalid_request`, `session_conflict`, `workflow_failed`, `run_lost`, …).
 */
export type ClientErrorCode =
  /** The caller's `signal` fired. */
  | 'aborted'
  /** The run ended with `done` `cancelled`, or `cancel()` came before the run was started. */
  | 'cancelled'
  /** The server sent `event: expired`: no run started on the session within its idle timeout. */
  | 'expired'
  /** The request never got an answer (DNS, refused connection, reset) and is not retried. */
  | 'network_error'
  /** The stream could not be re-established within `reconnect.maxAttempts` attempts in a row. */
  | 'retries_exhausted'
  /** The server answered something that is not this service's protocol (HTML, bad JSON). */
  | 'protocol_error'
  /** An HTTP error whose body is not the contract's `{"error": {"code", "message"}}`. */
  | 'http_error'
  /** A run ended `failed` without an error code (the contract always sends one). */
  | 'run_failed';

/**
 * A {@link TimelineError}'s `code`: the SDK's own, the service's HTTP error codes, or a failed
 * run's code; open to codes a newer service adds.
 */
export type TimelineErrorCode = ClientErrorCode | HttpErrorCode | RunErrorCode | (string & {});

export interface TimelineErrorOptions {
  /** HTTP status, when the server answered with an error. */
  status?: number;
  /** The terminal `done`, when the run ended `failed` or `cancelled`. */
  done?: DoneRecord;
  cause?: unknown;
}

/** Every failure the SDK reports: match on `code`, never on the message. */
export class TimelineError extends Error {
  override readonly name = 'TimelineError';
  readonly code: TimelineErrorCode;
  readonly status: number | undefined;
  readonly done: DoneRecord | undefined;

  constructor(code: TimelineErrorCode, message: string, options: TimelineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.done = options.done;
  }
}

/** The error a run ends with when the caller's signal fires. */
export function abortedError(signal: AbortSignal): TimelineError {
  return new TimelineError('aborted', 'Stopped following the session: the signal was aborted', {
    cause: signal.reason,
  });
}
