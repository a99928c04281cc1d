import type { RunRequest, TimelineClient } from '../client.js';
import type { TimelineError } from '../errors.js';
import { errorOfDone, type ConnectionState, type TimelineRun } from '../run.js';
import type { DoneRecord, GapPayload, ReadyPayload, TimelineEvent } from '../types.js';
import type { SessionPersistence } from './session-persistence.js';

/** Where the followed session stands, as a UI shows it. */
export type TimelineStatus = 'idle' | 'waiting' | 'running' | 'completed' | 'failed' | 'cancelled';

/** What {@link useTimeline} renders from: one immutable snapshot per change. */
export interface TimelineState<R = unknown> {
  /** The session followed, `null` when idle. */
  sessionId: string | null;
  /**
   * `waiting` until the run has started (its first event, or a resumed stream's `ready`), then
   * `running`, then how it ended. `failed` also when the session could not be followed (see `error`).
   */
  status: TimelineStatus;
  /** The session's events in order, each event id once. */
  events: readonly TimelineEvent[];
  /** The workflow's result once `completed`. */
  result: R | undefined;
  /** Why it is `failed`: the run's `done.error` code, or why the session could not be followed. */
  error: TimelineError | null;
  /** Events lost from the server's log before this page read them (never silent). */
  gaps: readonly GapPayload[];
  /** The stream's connection while following: `live`, `reconnecting`, or `null` (not connected). */
  connection: ConnectionState | null;
}

const IDLE: TimelineState<never> = Object.freeze({
  sessionId: null,
  status: 'idle',
  events: Object.freeze([]) as readonly TimelineEvent[],
  result: undefined,
  error: null,
  gaps: Object.freeze([]) as readonly GapPayload[],
  connection: null,
});

/** The run being followed and what stops following it. */
interface Following {
  run: TimelineRun;
  controller: AbortController;
  /**
   * Events of this session were seen before (in memory, or by the page before a reload), so a
   * `ready` that says `waiting` means the server no longer has the session.
   */
  sawEvents: boolean;
}

/**
 * The state machine behind {@link useTimeline}, free of React: one session at a time, started
 * or resumed through {@link TimelineClient}, its snapshot read through `subscribe` and
 * `getSnapshot` (the `useSyncExternalStore` contract). Nothing touches the network or the
 * storage before {@link attach}, so React may make and drop stores while rendering.
 */
export class TimelineStore<R = unknown> {
  readonly #client: TimelineClient;
  readonly #persistence: SessionPersistence | null;
  #sessionId: string | null = null;
  #status: TimelineStatus = 'idle';
  #events: TimelineEvent[] = [];
  /** The snapshot's copy of `#events`, made again only once they changed. */
  #eventsView: readonly TimelineEvent[] | null = null;
  #result: R | undefined = undefined;
  #error: TimelineError | null = null;
  #gaps: GapPayload[] = [];
  #gapsView: readonly GapPayload[] | null = null;
  #connection: ConnectionState | null = null;

  #snapshot: TimelineState<R> = IDLE;
  #fresh = true;
  readonly #listeners = new Set<() => void>();
  #notifying: ReturnType<typeof setTimeout> | null = null;

  #following: Following | null = null;
  #mounts = 0;
  #release: ReturnType<typeof setTimeout> | null = null;

  constructor(client: TimelineClient, persistence: SessionPersistence | null) {
    this.#client = client;
    this.#persistence = persistence;
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  readonly getSnapshot = (): TimelineState<R> => {
    if (!this.#fresh) {
      this.#snapshot = Object.freeze({
        sessionId: this.#sessionId,
        status: this.#status,
        // A new array only when events changed, so `events` can be a memo dependency.
        events: (this.#eventsView ??= Object.freeze(this.#events.slice())),
        result: this.#result,
        error: this.#error,
        gaps: (this.#gapsView ??= Object.freeze(this.#gaps.slice())),
        connection: this.#connection,
      });
      this.#fresh = true;
    }
    return this.#snapshot;
  };

  /** What a server render shows (and so the first client render, for hydration): idle. */
  readonly getServerSnapshot = (): TimelineState<R> => IDLE;

  /**
   * Starts a run: a new session id, the stream opened first, `POST /execute` once it is ready.
   * One run at a time: while one is `waiting` or `running`, this starts nothing and returns its
   * session id, so an effect run twice (StrictMode) or a double click cannot start two runs.
   */
  readonly start = (request: RunRequest): string => {
    if (this.#sessionId !== null && this.#isActive()) return this.#sessionId;
    this.#stopFollowing();
    const controller = new AbortController();
    const run = this.#client.execute<R>(request, { signal: controller.signal });
    this.#clear(run.sessionId, 'waiting');
    this.#persistence?.write({ sessionId: run.sessionId, lastEventId: null });
    this.#listen(run, controller, false);
    return run.sessionId;
  };

  /**
   * Asks the server to cancel the run; `status` becomes `cancelled` when its `done` arrives.
   * Does nothing when no run is waiting or running.
   */
  readonly cancel = async (): Promise<void> => {
    if (this.#following) return this.#following.run.cancel();
    if (this.#sessionId !== null && this.#isActive()) await this.#client.cancel(this.#sessionId);
  };

  /**
   * Back to `idle`: stops following and forgets the session, also across reloads. The run on
   * the server goes on; `cancel()` first to stop it.
   */
  readonly reset = (): void => {
    this.#stopFollowing();
    this.#persistence?.clear();
    this.#clear(null, 'idle');
  };

  /**
   * A component uses the store (an effect ran). The first use resumes the session kept across a
   * reload; after a release, the session followed before.
   */
  attach(): void {
    this.#mounts += 1;
    if (this.#release !== null) {
      clearTimeout(this.#release);
      this.#release = null;
      return;
    }
    if (this.#mounts > 1 || this.#following) return;
    if (this.#sessionId !== null && this.#isActive()) {
      // Followed before a release: the events before are in memory, resume after them.
      this.#resume(this.#sessionId, this.#events.at(-1)?.event_id ?? null, this.#events.length > 0);
      return;
    }
    const saved = this.#status === 'idle' ? this.#persistence?.read() : null;
    if (!saved) return;
    // After a reload the page's events are gone, and the server keeps the whole log: replay it
    // from the start. Storing the events instead would cost a storage write per event and
    // could overflow the storage quota on a long run.
    this.#clear(saved.sessionId, 'waiting');
    this.#resume(saved.sessionId, null, saved.lastEventId !== null);
  }

  /**
   * The component's effect was cleaned up. StrictMode cleans up and runs it again at once, so
   * following stops only when no use follows within a tick: one stream, never two.
   */
  detach(): void {
    this.#mounts -= 1;
    if (this.#mounts > 0) return;
    this.#release = setTimeout(() => {
      this.#release = null;
      this.#stopFollowing();
    }, 0);
  }

  #isActive(): boolean {
    return this.#status === 'waiting' || this.#status === 'running';
  }

  #resume(sessionId: string, lastEventId: string | null, sawEvents: boolean): void {
    const controller = new AbortController();
    const run = this.#client.follow<R>(sessionId, { lastEventId, signal: controller.signal });
    this.#listen(run, controller, sawEvents);
  }

  /** Routes a run's callbacks into the state while it is the one followed. */
  #listen(run: TimelineRun<R>, controller: AbortController, sawEvents: boolean): void {
    const following: Following = { run, controller, sawEvents };
    this.#following = following;
    const current = () => this.#following === following;
    run.onEvent = (event) => {
      if (!current()) return;
      following.sawEvents = true;
      this.#events.push(event);
      this.#eventsView = null;
      if (this.#status === 'waiting') this.#status = 'running';
      this.#persist(event.event_id);
      this.#changed();
    };
    run.onReady = (ready) => current() && this.#ready(following, ready);
    run.onGap = (gap) => {
      if (!current()) return;
      this.#gaps.push(gap);
      this.#gapsView = null;
      this.#changed();
    };
    run.onConnection = (state) => {
      if (!current()) return;
      this.#connection = state;
      this.#changed();
    };
    run.onDone = (done) => {
      if (!current()) return;
      this.#following = null;
      this.#done(done);
    };
    run.onError = (error) => {
      if (!current()) return;
      this.#following = null;
      this.#failed(following, error);
    };
  }

  #ready(following: Following, ready: ReadyPayload): void {
    if (ready.status === 'waiting') {
      // Expired from the server's log (or never there): nothing left to show.
      if (following.sawEvents) this.reset();
      return;
    }
    if (this.#status === 'waiting') {
      this.#status = 'running';
      this.#changed();
    }
  }

  #done(done: DoneRecord): void {
    this.#status = done.status;
    this.#result = done.status === 'completed' ? (done.result as R) : undefined;
    this.#error = done.status === 'failed' ? errorOfDone(done) : null;
    this.#connection = null;
    this.#persist(done.id);
    this.#changed();
  }

  #failed(following: Following, error: TimelineError): void {
    // Nothing to resume: the run never started here, or the server no longer has the session.
    if (!following.sawEvents) this.#persistence?.clear();
    if (following.sawEvents && (error.code === 'expired' || error.code === 'session_not_found')) {
      this.reset();
      return;
    }
    // `cancel()` before the run was started: it ends here, without a `done`.
    this.#status = error.code === 'cancelled' ? 'cancelled' : 'failed';
    this.#error = error.code === 'cancelled' ? null : error;
    this.#connection = null;
    this.#changed();
  }

  #persist(lastEventId: string): void {
    if (this.#sessionId !== null) this.#persistence?.write({ sessionId: this.#sessionId, lastEventId });
  }

  #stopFollowing(): void {
    const following = this.#following;
    this.#following = null;
    following?.controller.abort();
    if (this.#connection !== null) {
      this.#connection = null;
      this.#changed();
    }
  }

  #clear(sessionId: string | null, status: TimelineStatus): void {
    this.#sessionId = sessionId;
    this.#status = status;
    this.#events = [];
    this.#eventsView = null;
    this.#result = undefined;
    this.#error = null;
    this.#gaps = [];
    this.#gapsView = null;
    this.#connection = null;
    this.#changed();
  }

  /**
   * A new snapshot is due. Listeners hear of it once per task, not once per event: a replay
   * of a long log renders in a few steps instead of once per event.
   */
  #changed(): void {
    this.#fresh = false;
    if (this.#notifying !== null) return;
    this.#notifying = setTimeout(() => {
      this.#notifying = null;
      for (const listener of this.#listeners) listener();
    }, 0);
  }
}
