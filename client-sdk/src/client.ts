import { v4 as uuidv4 } from 'uuid';
import { ServiceApi, type FetchLike, type HeadersOption } from './api.js';
import { DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.js';
import { TimelineError } from './errors.js';
import { TimelineRun, type RunOptions } from './run.js';
import { SessionStream, type StreamSink } from './session-stream.js';
import type { ExecuteRequest, SessionHistory } from './types.js';

export interface TimelineClientOptions {
  /**
   * The service's URL, e.g. `https://timeline.example.com` or `https://example.com/api`;
   * in a browser `''` means the page's own origin.
   */
  baseUrl: string;
  /** Sent with every request, e.g. `{ Authorization: 'Bearer …' }`; a function is called per request. */
  headers?: HeadersOption;
  /** Defaults to the global `fetch` (browsers, Node 20+). */
  fetch?: FetchLike;
  /** How a dropped stream is re-established. */
  reconnect?: ReconnectOptions;
  /**
   * Silence on a stream (no event, not even the server's `: ping`) after which it counts as
   * dropped and is resumed. Keep it above the server's `KEEPALIVE_MS`. Defaults to `45000`;
   * `null` = off.
   */
  stallTimeoutMs?: number | null;
}

/** Options of {@link TimelineClient.execute}: callbacks and a signal. */
export type ExecuteOptions = RunOptions;

/** Options of {@link TimelineClient.follow}. */
export interface FollowOptions extends RunOptions {
  /** Resume after this event (e.g. a saved `run.lastEventId`); omitted: replay from the start. */
  lastEventId?: string | null;
}

/** The body of `execute()`: the SDK makes the session id itself. */
export type RunRequest = Omit<ExecuteRequest, 'session_id'>;

const DEFAULT_STALL_TIMEOUT_MS = 45000;

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`TimelineClient: ${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * The timeline service's client. `execute()` does the whole dance — a fresh session id, the
 * stream opened first, `POST /execute` only once the stream is `ready` (so no event can be
 * missed), resume on drop — and `follow()` joins a session that is already running or done.
 */
export class TimelineClient {
  readonly #api: ServiceApi;
  readonly #reconnect: Required<ReconnectOptions>;
  readonly #stallTimeoutMs: number | null;

  constructor(options: TimelineClientOptions) {
    if (typeof options?.baseUrl !== 'string') throw new TypeError('TimelineClient: baseUrl must be a string');
    const fetchImpl = options.fetch ?? ((url: string, init: RequestInit) => globalThis.fetch(url, init));
    this.#api = new ServiceApi(options.baseUrl, options.headers, fetchImpl);
    const reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#reconnect = {
      maxAttempts: positiveInteger(reconnect.maxAttempts, 'reconnect.maxAttempts'),
      initialDelayMs: positiveInteger(reconnect.initialDelayMs, 'reconnect.initialDelayMs'),
      maxDelayMs: positiveInteger(reconnect.maxDelayMs, 'reconnect.maxDelayMs'),
    };
    const stall = options.stallTimeoutMs === undefined ? DEFAULT_STALL_TIMEOUT_MS : options.stallTimeoutMs;
    this.#stallTimeoutMs = stall === null ? null : positiveInteger(stall, 'stallTimeoutMs');
  }

  /**
   * Starts a workflow and follows it. The handle is returned at once; the run starts right
   * after, so callbacks can be assigned on it first.
   */
  execute<R = unknown>(request: RunRequest, options: ExecuteOptions = {}): TimelineRun<R> {
    if ((request as ExecuteRequest).session_id !== undefined) {
      throw new TypeError('TimelineClient.execute makes the session id itself; to join a session use follow()');
    }
    const sessionId = uuidv4();
    let phase: 'connecting' | 'posting' | 'started' | 'stopped' = 'connecting';
    let posting: Promise<unknown> | null = null;

    const drive = async (sink: StreamSink, signal: AbortSignal): Promise<void> => {
      let onReady: () => void = () => undefined;
      const ready = new Promise<void>((resolve) => (onReady = resolve));
      const stream = this.#stream(sessionId, null, signal, {
        ...sink,
        ready: (payload) => {
          sink.ready(payload);
          onReady();
        },
      });
      const following = stream.run();
      // Never POST before the stream is subscribed: `ready` is the server's promise of that.
      const isReady = await Promise.race([ready.then(() => true), following.then(() => false)]);
      if (isReady && phase === 'connecting') {
        phase = 'posting';
        posting = this.#api.execute({ ...request, session_id: sessionId }, signal);
        await posting;
        phase = 'started';
      }
      await following;
    };

    const cancel = async (stop: (error: TimelineError) => void): Promise<void> => {
      if (phase === 'connecting') {
        phase = 'stopped';
        stop(new TimelineError('cancelled', 'Cancelled before the run was started'));
        return;
      }
      // The POST decides whether there is a run to cancel; its failure is the run's own error.
      if (phase === 'posting' && !(await posting?.then(() => true, () => false))) return;
      await this.#api.cancel(sessionId);
    };

    return new TimelineRun<R>(sessionId, options, { drive, cancel });
  }

  /**
   * Joins an existing session (another tab, a page reload): replays what this client has not
   * seen (everything, or what follows `lastEventId`), then live events, to `done`.
   */
  follow<R = unknown>(sessionId: string, options: FollowOptions = {}): TimelineRun<R> {
    const lastEventId = options.lastEventId ?? null;
    const drive = (sink: StreamSink, signal: AbortSignal) => this.#stream(sessionId, lastEventId, signal, sink).run();
    const cancel = async () => {
      await this.#api.cancel(sessionId);
    };
    return new TimelineRun<R>(sessionId, options, { drive, cancel });
  }

  /** `GET /timeline/:sessionId`: the retained events and `done`, as JSON. */
  history(sessionId: string, options: { signal?: AbortSignal } = {}): Promise<SessionHistory> {
    return this.#api.history(sessionId, options.signal);
  }

  /**
   * Cancels a running session from anywhere. Resolves once accepted or when it had already
   * finished; rejects with a {@link TimelineError} (`session_not_found`, …).
   */
  async cancel(sessionId: string): Promise<void> {
    await this.#api.cancel(sessionId);
  }

  #stream(sessionId: string, lastEventId: string | null, signal: AbortSignal, sink: StreamSink): SessionStream {
    return new SessionStream(
      {
        api: this.#api,
        sessionId,
        lastEventId,
        signal,
        reconnect: this.#reconnect,
        stallTimeoutMs: this.#stallTimeoutMs,
        random: Math.random,
      },
      sink,
    );
  }
}
