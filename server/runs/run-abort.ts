/** Why a run's AbortSignal fired; the reason decides the run's final status and error code. */
export class RunAbort extends Error {
  constructor(readonly reason: 'cancelled' | 'shutdown' | 'lease_lost') {
    super(`run aborted: ${reason}`);
    this.name = 'RunAbort';
  }
}
