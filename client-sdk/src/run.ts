import { abortedError, TimelineError } from './errors.js';
import type { StreamSink } from './session-stream.js';
import type { DoneRecord, GapPayload, ReadyPayload, TimelineEvent } from './types.js';

/** The stream's connection: `live` from each `ready`, `reconnecting` from a drop to the next `ready`. */
export type ConnectionState = 'live' | 'reconnecting';

/**
 * Callbacks of a run, for callback-style apps. Each may also be assigned on the handle right
 * after `execute()`/`follow()` returns: nothing is delivered before the first network answer.
 * Exactly one of `onDone` and `onError` is called, once. An exception a callback throws is
 * rethrown asynchronously (as an `EventTarget` listener's is) and does not stop the run.
 */
export interface RunCallbacks {
  /** Each timeline event, exactly once, in order, across reconnections. */
  onEvent?: ((event: TimelineEvent) => void) | null;
  /** Events were lost from the server's log (trimmed or expired) before this client read them. */
  onGap?: ((gap: GapPayload) => void) | null;
  /** The run ended (`completed`, `failed` or `cancelled`); the stream is closed. */
  onDone?: ((done: DoneRecord) => void) | null;
  /** The run could not be followed to its end (see {@link TimelineError}'s `code`). */
  onError?: ((error: TimelineError) => void) | null;
  /**
   * The stream's connection changed, e.g. for a "reconnecting…" line: `live` once a
   * (re)connection is ready, `reconnecting` when it dropped and the SDK is about to resume.
   * Not called once the run has ended, nor for a failure that ends it.
   */
  onConnection?: ((state: ConnectionState) => void) | null;
  /**
   * Each (re)connection's `ready`: the session's status as the server saw it then. `waiting`
   * on a session you followed because you saw its events means its log is gone (expired).
   */
  onReady?: ((ready: ReadyPayload) => void) | null;
}

export interface RunOptions extends RunCallbacks {
  /** Stops following (the run on the server goes on; use `cancel()` to stop it). */
  signal?: AbortSignal;
}

/** @internal How a run is driven: follows the stream into `sink` until `done` or a failure. */
export type RunDriver = (sink: StreamSink, signal: AbortSignal) => Promise<void>;

/** @internal Asks the server to cancel; `stop` ends the run locally when there is nothing to ask yet. */
export type RunCanceller = (stop: (error: TimelineError) => void) => Promise<void>;

type Outcome = { done: DoneRecord } | { error: TimelineError };

interface Waiter {
  resolve: (result: IteratorResult<TimelineEvent>) => void;
  reject: (error: unknown) => void;
}

function toTimelineError(error: unknown): TimelineError {
  if (error instanceof TimelineError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new TimelineError('protocol_error', `Unexpected failure while following the session: ${message}`, { cause: error });
}

/** @internal The error a failed `done` rejects the `result` promise with. */
export function errorOfDone(done: DoneRecord): TimelineError {
  // The contract always sends `error` with `failed`; a server that does not still fails the run.
  return new TimelineError(done.error?.code ?? 'run_failed', done.error?.message ?? 'The run failed', { done });
}

/** The outcome a `done` gives the `result` promise. */
function doneError(done: DoneRecord): TimelineError | null {
  if (done.status === 'completed') return null;
  if (done.status === 'cancelled') return new TimelineError('cancelled', 'The run was cancelled', { done });
  return errorOfDone(done);
}

/** Like an `EventTarget`: a throwing listener is reported, the dispatcher carries on. */
function invoke<T>(callback: ((value: T) => void) | null | undefined, value: T): void {
  if (!callback) return;
  try {
    callback(value);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * One followed session: its events as an async iterator and as callbacks, and its final
 * `result`. Made by `TimelineClient.execute()` and `TimelineClient.follow()`.
 */
export class TimelineRun<R = unknown> implements AsyncIterable<TimelineEvent> {
  readonly sessionId: string;
  onEvent: RunCallbacks['onEvent'];
  onGap: RunCallbacks['onGap'];
  onDone: RunCallbacks['onDone'];
  onError: RunCallbacks['onError'];
  onConnection: RunCallbacks['onConnection'];
  onReady: RunCallbacks['onReady'];
  /** Every gap reported so far, so an app that only iterates can still see data was lost. */
  readonly gaps: GapPayload[] = [];

  #lastEventId: string | null;
  #outcome: Outcome | null = null;
  #connection: ConnectionState | null = null;
  #result: Promise<R> | null = null;
  #settleResult: (() => void) | null = null;
  readonly #controller = new AbortController();
  readonly #cancel: RunCanceller;
  /** Events not yet taken by the iterator; `null` once the iterator was closed early. */
  #queue: TimelineEvent[] | null = [];
  readonly #waiters: Waiter[] = [];
  #iterated = false;
  #errorThrown = false;

  /** @internal Use `TimelineClient.execute()` or `TimelineClient.follow()`. */
  constructor(
    sessionId: string,
    options: RunOptions & { lastEventId?: string | null },
    driver: { drive: RunDriver; cancel: RunCanceller },
  ) {
    this.sessionId = sessionId;
    this.onEvent = options.onEvent;
    this.onGap = options.onGap;
    this.onDone = options.onDone;
    this.onError = options.onError;
    this.onConnection = options.onConnection;
    this.onReady = options.onReady;
    this.#lastEventId = options.lastEventId ?? null;
    this.#cancel = driver.cancel;

    const { signal } = options;
    const controller = this.#controller;
    if (signal) {
      const abort = () => this.#finish({ error: abortedError(signal) });
      if (signal.aborted) queueMicrotask(abort);
      else signal.addEventListener('abort', abort, { once: true });
      controller.signal.addEventListener('abort', () => signal.removeEventListener('abort', abort), { once: true });
    }
    const sink: StreamSink = {
      ready: (ready) => {
        this.#connect('live');
        if (!this.#outcome) invoke(this.onReady, ready);
      },
      reconnecting: () => this.#connect('reconnecting'),
      event: (event) => this.#deliver(event),
      gap: (gap) => {
        this.gaps.push(gap);
        invoke(this.onGap, gap);
      },
      done: (done) => this.#finish({ done }),
    };
    // Started in a microtask so callbacks assigned right after the constructor see everything.
    queueMicrotask(() => {
      if (controller.signal.aborted) return;
      driver.drive(sink, controller.signal).then(
        () => this.#finish({ error: new TimelineError('protocol_error', 'The stream ended without done') }),
        (error: unknown) => this.#finish({ error: toTimelineError(error) }),
      );
    });
  }

  /** The id of the last event (or `done`) delivered: pass it to `follow()` to resume after a reload. */
  get lastEventId(): string | null {
    return this.#lastEventId;
  }

  /** Whether the run has ended (`done` arrived, or following it failed). */
  get finished(): boolean {
    return this.#outcome !== null;
  }

  /**
   * Resolves with the workflow's result when the run completes; rejects with a
   * {@link TimelineError}: the server's `error.code` for a failed run, `cancelled`, or why the
   * session could not be followed. Made on first access, so an app that only uses callbacks
   * never holds an unobserved rejected promise.
   */
  get result(): Promise<R> {
    this.#result ??= new Promise<R>((resolve, reject) => {
      this.#settleResult = () => {
        const outcome = this.#outcome as Outcome;
        if ('error' in outcome) {
          reject(outcome.error);
          return;
        }
        const error = doneError(outcome.done);
        if (error) reject(error);
        else resolve(outcome.done.result as R);
      };
      if (this.#outcome) this.#settleResult();
    });
    return this.#result;
  }

  /**
   * Asks the server to cancel the run; the stream then ends with `done` `cancelled`. Resolves
   * once the server accepted (or the run had already ended); rejects with a {@link TimelineError}.
   */
  async cancel(): Promise<void> {
    if (this.#outcome) return;
    await this.#cancel((error) => this.#finish({ error }));
  }

  /**
   * The events from the start of the run (buffered until read), ending after `done`; throws
   * the run's {@link TimelineError} if it could not be followed. One iterator per run; leaving
   * the loop early does not stop the run.
   */
  [Symbol.asyncIterator](): AsyncIterator<TimelineEvent> {
    if (this.#iterated) throw new TypeError('A TimelineRun can be iterated once; use onEvent for another reader');
    this.#iterated = true;
    return {
      next: () =>
        new Promise<IteratorResult<TimelineEvent>>((resolve, reject) => {
          this.#waiters.push({ resolve, reject });
          this.#pump();
        }),
      return: () => {
        this.#queue = null;
        this.#pump();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  #deliver(event: TimelineEvent): void {
    if (this.#outcome) return;
    this.#lastEventId = event.event_id;
    this.#queue?.push(event);
    this.#pump();
    invoke(this.onEvent, event);
  }

  #connect(state: ConnectionState): void {
    if (this.#outcome || this.#connection === state) return;
    this.#connection = state;
    invoke(this.onConnection, state);
  }

  #finish(outcome: Outcome): void {
    if (this.#outcome) return;
    this.#outcome = outcome;
    if ('done' in outcome) this.#lastEventId = outcome.done.id;
    // Stops the stream (and a pending POST) whatever ended the run.
    this.#controller.abort();
    this.#pump();
    this.#settleResult?.();
    if ('done' in outcome) invoke(this.onDone, outcome.done);
    else invoke(this.onError, outcome.error);
  }

  /** Hands queued events, then the end (or the error, once), to waiting `next()` calls. */
  #pump(): void {
    while (this.#waiters.length > 0) {
      const queue = this.#queue;
      if (queue && queue.length > 0) {
        (this.#waiters.shift() as Waiter).resolve({ value: queue.shift() as TimelineEvent, done: false });
        continue;
      }
      const outcome = this.#outcome;
      if (queue && !outcome) return;
      const waiter = this.#waiters.shift() as Waiter;
      if (queue && outcome && 'error' in outcome && !this.#errorThrown) {
        this.#errorThrown = true;
        waiter.reject(outcome.error);
      } else {
        waiter.resolve({ value: undefined, done: true });
      }
    }
  }
}
