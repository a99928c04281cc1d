import type { EventDraft } from '../timeline/bus';

/** One event's JSON is over `MAX_EVENT_BYTES`: it is not published, and its run fails with `event_too_large`. */
export class EventTooLargeError extends Error {
  readonly code = 'event_too_large';

  constructor(
    readonly bytes: number,
    readonly limit: number,
    readonly type: string,
  ) {
    super(`A ${type} event of ${bytes} bytes is over the limit of ${limit} bytes per event (MAX_EVENT_BYTES)`);
    this.name = 'EventTooLargeError';
  }
}

/** The instance holds `MAX_PUBLISH_BACKLOG_BYTES` of unpublished events: the run fails with `publish_backlog_full`. */
export class PublishBacklogFullError extends Error {
  readonly code = 'publish_backlog_full';

  constructor(readonly limit: number) {
    super(`This instance holds ${limit} bytes of events the bus has not taken yet (MAX_PUBLISH_BACKLOG_BYTES)`);
    this.name = 'PublishBacklogFullError';
  }
}

export interface PublishBudgetOptions {
  /** `MAX_EVENT_BYTES`: the largest event JSON (UTF-8 bytes) a run may publish. */
  maxEventBytes: number;
  /**
   * `MAX_PUBLISH_BACKLOG_BYTES`: event bytes all runs of this instance may have handed to the
   * bus that it has not stored yet (a slow or unreachable Redis, runs that do not await emits).
   */
  maxBacklogBytes: number;
}

/**
 * The instance's byte budget for events on their way to the bus: one event's size, and the sum
 * of those not yet published, across all runs. The process's memory for events in flight is
 * bounded by it, whatever the workflows emit and however slow the bus is.
 */
export class PublishBudget {
  private pending = 0;

  constructor(private readonly options: PublishBudgetOptions) {}

  /**
   * Measures `event` and counts it as pending; resolves with its size for `release`. Throws
   * `EventTooLargeError`, or `PublishBacklogFullError` unless `essential` (a run's terminal
   * step, which must be written whatever the backlog; it is small).
   */
  take(event: EventDraft, { essential = false } = {}): number {
    const bytes = Buffer.byteLength(JSON.stringify(event));
    if (bytes > this.options.maxEventBytes) throw new EventTooLargeError(bytes, this.options.maxEventBytes, event.type);
    if (!essential && this.pending + bytes > this.options.maxBacklogBytes) throw new PublishBacklogFullError(this.options.maxBacklogBytes);
    this.pending += bytes;
    return bytes;
  }

  /** The bus took (or refused) an event `take` counted. */
  release(bytes: number): void {
    this.pending -= bytes;
  }

  /** Whether one more event of the largest size fits: new runs are admitted only then. */
  get hasRoom(): boolean {
    return this.pending + this.options.maxEventBytes <= this.options.maxBacklogBytes;
  }

  /** Bytes of events on their way to the bus (tests, metrics). */
  get pendingBytes(): number {
    return this.pending;
  }
}
