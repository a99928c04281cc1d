import type { Logger } from 'pino';
import type { DonePayload, ErrorInfo, TimelineEvent } from '../../client-sdk/src/types';
import type { DoneErrorCode } from '../contract/error-codes';

const RUN_LOST: ErrorInfo & { code: DoneErrorCode } = {
  code: 'run_lost',
  message: 'The instance running this workflow stopped renewing its lease (it died or lost Redis)',
};

/**
 * What a sweep writes to end a lost run, as JSON: the `WORKFLOW_ERROR` step's fields after
 * `seq` (the sweep script puts `session_id` and the next seq first, as the owner would) and
 * the `done` payload.
 */
export function runLostEnding(at: Date): { stepJson: string; doneJson: string } {
  const step: Omit<TimelineEvent, 'event_id' | 'session_id' | 'seq'> = {
    type: 'WORKFLOW_ERROR',
    status: 'ERROR',
    message: `Workflow failed: ${RUN_LOST.message}`,
    details: { error: RUN_LOST },
    timestamp: at.toISOString(),
  };
  const done: DonePayload = { status: 'failed', error: RUN_LOST };
  return { stepJson: JSON.stringify(step), doneJson: JSON.stringify(done) };
}

export interface LeaseSweeperOptions {
  /** The run lease (`RUN_LEASE_MS`): each sweep follows the last by a random quarter to half of it. */
  leaseMs: number;
  /** One sweep: ends the runs whose lease expired; resolves with their session ids. */
  sweep: () => Promise<string[]>;
  log: Logger;
}

/**
 * Sweeps for runs whose owner stopped renewing its lease, on every instance. A lease ends
 * at most `leaseMs` after its owner's last renewal; a sweep follows within `leaseMs / 2` and
 * marks it missing, and the next one, a quarter to half a lease later, ends the run if it is
 * still missing: a dead owner's run ends within 2 × the lease while any instance is up (the
 * contract allows 3 ×). The jitter keeps instances from sweeping in lock-step; when they do
 * race, the sweep script lets only one of them end the run.
 */
export class LeaseSweeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: LeaseSweeperOptions) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = (this.options.leaseMs / 4) * (1 + Math.random());
    // One sweep at a time: the next is scheduled only once this one settled.
    this.timer = setTimeout(() => void this.run(), delay);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    try {
      await this.options.sweep();
    } catch (error) {
      // Redis away or slow: the next sweep tries again, and the lease is still the authority.
      this.options.log.debug({ err: error }, 'run lease sweep failed');
    } finally {
      this.schedule();
    }
  }
}
