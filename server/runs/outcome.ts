import type { DonePayload, ErrorInfo } from '../../client-sdk/src/types';
import { executeFailure, type DoneErrorCode, type HttpErrorCode } from '../contract/error-codes';
import { ModelError } from '../models/model';
import { BusUnavailableError } from '../timeline/bus';
import { EventTooLargeError, PublishBacklogFullError } from './publish-budget';
import { RunAbort } from './run-abort';

/** How a run ended: the `done` payload, and the status a synchronous execute answers with. */
export interface RunEnding {
  done: DonePayload;
  /** HTTP status and code for a synchronous execute of a failed run (from the error table). */
  failure?: { status: number; code: HttpErrorCode };
}

/** Classifies what a workflow threw, given whether (and why) the run was aborted. */
export function endingFromError(error: unknown, signal: AbortSignal): RunEnding {
  const abort = signal.aborted && signal.reason instanceof RunAbort ? signal.reason : null;
  if (abort?.reason === 'cancelled') return { done: { status: 'cancelled' } };
  if (abort?.reason === 'shutdown') return failed('shutdown', 'The instance shut down before the run finished');
  if (abort?.reason === 'timeout') {
    return failed('run_timeout', 'The run took longer than the maximum run duration (MAX_RUN_DURATION_MS)');
  }
  if (abort?.reason === 'lease_lost') return failed('run_lost', 'The run lost its lease and was taken over');
  if (error instanceof BusUnavailableError) {
    return failed('bus_unavailable', 'The event bus stayed unreachable longer than BUS_OUTAGE_MS');
  }
  if (error instanceof EventTooLargeError || error instanceof PublishBacklogFullError) return failed(error.code, error.message);
  if (error instanceof ModelError) return failed(error.code, error.message);
  return failed('internal_error', 'The workflow failed unexpectedly');
}

function failed(code: DoneErrorCode, message: string): RunEnding {
  const error: ErrorInfo = { code, message };
  return { done: { status: 'failed', error }, failure: executeFailure(code) };
}
