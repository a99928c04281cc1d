/** Why a run's AbortSignal fired; the reason decides the run's final status and error code. */
export class RunAbort extends Error {
  constructor(readonly reason: 'cancelled' | 'shutdown' | 'lease_lost' | 'timeout') {
    super(`run aborted: ${reason}`);
    this.name = 'RunAbort';
  }
}

/**
 * `work`, or its run's abort, whichever comes first: a workflow that does not pass the signal
 * on (or is stuck) cannot hold its run, and its `done`, past a cancel, a shutdown or the
 * duration budget. What `work` does afterwards is ignored.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  work.catch(() => undefined);
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}
