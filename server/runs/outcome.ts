import type { DonePayload, ErrorInfo } from '../../client-sdk/src/types';
import { ModelError } from '../models/model';
import { BusUnavailableError } from '../timeline/bus';
import { EventTooLargeError, PublishBacklogFullError } from './publish-budget';
import { RunAbort } from './run-abort';

/** How a run ended: the `done` payload, and the status a synchronous execute answers with. */
export interface RunEnding {
  done: DonePayload;
  /** HTTP status and code for a synchronous execute of a failed run. */
  failure?: { status: number; code: string };
}

const INTERNAL: ErrorInfo = { code: 'internal_error', message: 'The workflow failed unexpectedly' };

/** Classifies what a workflow threw, given whether (and why) the run was aborted. */
export function endingFromError(error: unknown, signal: AbortSignal): RunEnding {
  const abort = signal.aborted && signal.reason instanceof RunAbort ? signal.reason : null;
  if (abort?.reason === 'cancelled') return { done: { status: 'cancelled' } };
  if (abort?.reason === 'shutdown') {
    return failed({ code: 'shutdown', message: 'The instance shut down before the run finished' }, 503);
  }
  if (abort?.reason === 'timeout') {
    return failed({ code: 'run_timeout', message: 'The run took longer than the maximum run duration (MAX_RUN_DURATION_MS)' }, 504);
  }
  if (abort?.reason === 'lease_lost') {
    return failed({ code: 'run_lost', message: 'The run lost its lease and was taken over' }, 500);
  }
  if (error instanceof BusUnavailableError) {
    return failed({ code: 'bus_unavailable', message: 'The event bus stayed unreachable longer than BUS_OUTAGE_MS' }, 503);
  }
  if (error instanceof EventTooLargeError || error instanceof PublishBacklogFullError) {
    return failed({ code: error.code, message: error.message }, error instanceof EventTooLargeError ? 413 : 503);
  }
  if (error instanceof ModelError) {
    return { done: { status: 'failed', error: { code: error.code, message: error.message } }, failure: { status: 502, code: 'workflow_failed' } };
  }
  return failed(INTERNAL, 500);
}

function failed(error: ErrorInfo, status: number): RunEnding {
  const code = status === 500 ? 'internal_error' : error.code;
  return { done: { status: 'failed', error }, failure: { status, code } };
}
