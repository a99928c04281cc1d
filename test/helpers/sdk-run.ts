import { TimelineError } from '../../client-sdk/src';
import type { ConnectionState, TimelineRun } from '../../client-sdk/src/run';
import type { DoneRecord, GapPayload, TimelineEvent } from '../../client-sdk/src/types';
import { within } from './wait';

/** Bound on a run's end or an awaited event: long enough for a real server over Redis. */
const WAIT_MS = 15000;

/** What a run handed to its callbacks, in order. */
export interface Recorded {
  events: TimelineEvent[];
  gaps: GapPayload[];
  done: DoneRecord[];
  errors: TimelineError[];
  connection: ConnectionState[];
}

/** Records what a run hands to its callbacks (replacing any set before). */
export function record(run: TimelineRun): Recorded {
  const recorded: Recorded = { events: [], gaps: [], done: [], errors: [], connection: [] };
  run.onEvent = (event) => recorded.events.push(event);
  run.onGap = (gap) => recorded.gaps.push(gap);
  run.onDone = (done) => recorded.done.push(done);
  run.onError = (error) => recorded.errors.push(error);
  run.onConnection = (state) => recorded.connection.push(state);
  return recorded;
}

/** Runs `listener` on each event after the `onEvent` already set, which is kept. */
export function tapEvents(run: TimelineRun, listener: (event: TimelineEvent) => void): void {
  const previous = run.onEvent;
  run.onEvent = (event) => {
    previous?.(event);
    listener(event);
  };
}

/** Resolves on the first event `match` accepts, bounded. */
export function nextEvent(run: TimelineRun, match: (event: TimelineEvent) => boolean, label: string): Promise<TimelineEvent> {
  return within(
    new Promise<TimelineEvent>((resolve) => tapEvents(run, (event) => match(event) && resolve(event))),
    WAIT_MS,
    label,
  );
}

/** `run.result` settled into a value or a TimelineError, bounded. */
export function settle(run: TimelineRun): Promise<{ result?: unknown; error?: TimelineError }> {
  return within(
    run.result.then(
      (result) => ({ result }),
      (error: unknown) => {
        if (!(error instanceof TimelineError)) throw error;
        return { error };
      },
    ),
    WAIT_MS,
    `session ${run.sessionId} to end`,
  );
}
