import type { Counter } from 'prom-client';
import type { DonePayload } from '../../client-sdk/src/types';
import {
  RunLostError,
  type CancelRequestOutcome,
  type ClaimOptions,
  type EventDraft,
  type LiveListener,
  type LogSlice,
  type PublishOptions,
  type Subscription,
  type TimelineBus,
} from './bus';

/**
 * A bus that counts its failed operations (`timeline_bus_errors_total{operation}`) whichever
 * bus it wraps (memory, Redis, a cluster), and otherwise passes everything through. A run lost
 * to another instance is not a bus error; a failed ping is `timeline_bus_up`'s business.
 */
export class MeteredBus implements TimelineBus {
  constructor(
    private readonly bus: TimelineBus,
    private readonly errors: Counter<'operation'>,
  ) {}

  publish(sessionId: string, event: EventDraft, options?: PublishOptions): Promise<string> {
    return this.counted('publish', this.bus.publish(sessionId, event, options));
  }

  signalDone(sessionId: string, done: DonePayload, options?: PublishOptions): Promise<string | null> {
    return this.counted('signal_done', this.bus.signalDone(sessionId, done, options));
  }

  read(sessionId: string, afterId: string | null, limit?: number): Promise<LogSlice> {
    return this.counted('read', this.bus.read(sessionId, afterId, limit));
  }

  subscribe(sessionId: string, listener: LiveListener): Promise<Subscription> {
    return this.counted('subscribe', this.bus.subscribe(sessionId, listener));
  }

  claimRun(sessionId: string, owner: string, leaseMs: number, firstEvent?: EventDraft, options?: ClaimOptions): Promise<boolean> {
    return this.counted('claim_run', this.bus.claimRun(sessionId, owner, leaseMs, firstEvent, options));
  }

  renewLease(sessionId: string, owner: string, leaseMs: number): Promise<boolean> {
    return this.counted('renew_lease', this.bus.renewLease(sessionId, owner, leaseMs));
  }

  requestCancel(sessionId: string): Promise<CancelRequestOutcome> {
    return this.counted('request_cancel', this.bus.requestCancel(sessionId));
  }

  onCancelRequest(handler: (sessionId: string) => void): () => void {
    return this.bus.onCancelRequest(handler);
  }

  bindCaller(sessionId: string, caller: string): Promise<boolean> {
    return this.counted('bind_caller', this.bus.bindCaller(sessionId, caller));
  }

  runCaller(sessionId: string): Promise<string | null> {
    return this.counted('run_caller', this.bus.runCaller(sessionId));
  }

  ping(): Promise<void> {
    return this.bus.ping();
  }

  close(): Promise<void> {
    return this.bus.close();
  }

  private counted<T>(operation: string, pending: Promise<T>): Promise<T> {
    return pending.catch((error: unknown) => {
      if (!(error instanceof RunLostError)) this.errors.labels(operation).inc();
      throw error;
    });
  }
}
