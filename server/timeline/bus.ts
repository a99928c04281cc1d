import type { DonePayload, GapPayload, SessionStatus, TimelineEventBase } from '../../client-sdk/src/types';
import type { ErrorCode } from '../contract/error-codes';

/**
 * Entries a reader takes from a log at once (catch-up, history), so no reader holds a decoded
 * copy of a whole retained log.
 */
export const READ_PAGE_SIZE = 500;

/** An event before the bus has given it its id. */
export type EventDraft = Omit<TimelineEventBase, 'event_id'>;

/**
 * One entry of a session's log: a timeline event or the terminal `done`.
 * `data` is the JSON text sent to clients, serialised once when it was published, so
 * fanning out to many streams never re-serialises or re-parses it.
 */
export interface LogEntry {
  id: string;
  kind: 'event' | 'done';
  data: string;
  /**
   * An event's `seq`, kept beside `data` so readers can drop a resent event (an empty Redis
   * restart gives it a second id) without parsing JSON. Absent on `done`.
   */
  seq?: number;
  /**
   * The W3C `traceparent` of the span that published the event (only when that span was
   * sampled), kept beside `data` and never inside it: the instance that writes the entry to a
   * reader continues the publisher's trace, across instances. Absent with tracing off.
   */
  traceparent?: string;
}

/** What a publisher hands the bus with an event besides the event itself. */
export interface PublishOptions {
  /** Stored as the entry's `traceparent` (see `LogEntry`). */
  traceparent?: string;
}

/** What `claimRun` takes besides the session, the owner and the first event. */
export interface ClaimOptions extends PublishOptions {
  /** With auth on, the caller the session belongs to from then on. Defaults to `null`: nobody's. */
  caller?: string | null;
}

/** What is retained of a session after a position, read in one consistent step. */
export interface LogSlice {
  /** `waiting` means no run was ever started for the session (or its log expired). */
  status: SessionStatus;
  entries: LogEntry[];
  /** Set when the requested position precedes the oldest retained event of a trimmed log. */
  gap: GapPayload | null;
  /** True when a `limit` cut the slice short: entries after the last one remain. */
  more: boolean;
}

/** Receives a session's live entries in log order. */
export interface LiveListener {
  onEntry(entry: LogEntry): void;
  /**
   * The live feed may have missed entries (e.g. the bus reconnected): the reader should
   * read the log again after the last id it delivered. A bus calls it before it delivers any
   * live entry received after the loss, so nothing newer overtakes what was lost.
   */
  onResync?(): void;
}

export interface Subscription {
  unsubscribe(): void;
}

export type CancelRequestOutcome = 'cancelling' | 'not_found' | 'finished';

/**
 * The one seam between whoever produces a session's events and whoever streams them.
 * Implementations: `MemoryBus` (one process) and `RedisBus` (any number of instances).
 */
export interface TimelineBus {
  /** Appends an event to the session's log and fans it out; resolves with its id. */
  publish(sessionId: string, event: EventDraft, options?: PublishOptions): Promise<string>;
  /**
   * Appends the terminal `done` and sets the final status, exactly once per session.
   * Resolves with the entry id, or `null` if the session had already finished.
   */
  signalDone(sessionId: string, done: DonePayload, options?: PublishOptions): Promise<string | null>;
  /**
   * Entries after `afterId` (`null`: from the start), at most `limit` of them (default: all),
   * with the status, in one step. A caller that pages reads again after the last entry while
   * `more` is set.
   */
  read(sessionId: string, afterId: string | null, limit?: number): Promise<LogSlice>;
  /** Resolves once live entries of the session will reach `listener`. */
  subscribe(sessionId: string, listener: LiveListener): Promise<Subscription>;
  /**
   * Atomically claims a never-started session for `owner`, with a lease of `leaseMs`.
   * Resolves `false` if it is running or finished (the caller answers `409`). With
   * `firstEvent` (seq 1), a successful claim also publishes it, in the same step: a run's
   * first event then costs no round trip of its own. With `caller` (auth on), the session
   * belongs to that caller from then on, stored with the run so it lives as long as its log.
   */
  claimRun(sessionId: string, owner: string, leaseMs: number, firstEvent?: EventDraft, options?: ClaimOptions): Promise<boolean>;
  /** Extends the owner's lease; resolves `false` if the owner no longer holds it. */
  renewLease(sessionId: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Asks whichever instance runs the session to cancel it. */
  requestCancel(sessionId: string): Promise<CancelRequestOutcome>;
  /** Registers this instance's handler for cancel requests of any session. */
  onCancelRequest(handler: (sessionId: string) => void): () => void;
  /**
   * Resolves whether the session belongs to `caller`, binding it to `caller` if nobody holds it
   * yet (a stream opened before its run, or a run about to be claimed), atomically across
   * instances. A session whose run was claimed with a caller belongs to that caller. A binding
   * made before the run is kept `EVENT_TTL_S` after its caller's last touch (and never shorter
   * than the session's log then lives).
   */
  bindCaller(sessionId: string, caller: string): Promise<boolean>;
  /**
   * The caller the session's run was claimed with; `null` when it has no run, or one claimed
   * without a caller. Never binds (a history or cancel request by a stranger must not).
   */
  runCaller(sessionId: string): Promise<string | null>;
  /** Rejects when the bus cannot be reached (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The bus cannot be reached (Redis down): the caller answers `503 bus_unavailable`. */
export class BusUnavailableError extends Error {
  readonly code: ErrorCode = 'bus_unavailable';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}

/**
 * The session's run was ended by someone else (its lease expired and another instance
 * declared it lost): its owner must stop, and must not write events or `done` any more.
 */
export class RunLostError extends Error {
  readonly code: ErrorCode = 'run_lost';

  constructor(message: string) {
    super(message);
    this.name = 'RunLostError';
  }
}

/** Builds the stored JSON of an event: its id first, then the draft's fields. */
export function serializeEvent(id: string, draftJson: string): string {
  return draftJson === '{}' ? `{"event_id":"${id}"}` : `{"event_id":"${id}",${draftJson.slice(1)}`;
}
