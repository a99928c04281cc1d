import type { EventSourceMessage } from 'eventsource-parser';
import { errorFromResponse, type ServiceApi } from './api.js';
import { reconnectDelay, retryAfterMs, sleep, type ReconnectOptions } from './backoff.js';
import { abortedError, TimelineError } from './errors.js';
import { isAfter } from './event-id.js';
import { readSse } from './sse-reader.js';
import { watchForStall } from './stall-watch.js';
import type { DonePayload, DoneRecord, GapPayload, ReadyPayload, TimelineEvent } from './types.js';

/** Where a followed session's frames go. Calls never overlap and never throw back. */
export interface StreamSink {
  /** Every (re)connection's first frame. */
  ready(ready: ReadyPayload): void;
  /** A connection dropped (or was refused) and another attempt follows. */
  reconnecting(): void;
  /** Each timeline event exactly once, in order, across reconnections. */
  event(event: TimelineEvent): void;
  /** Events between `after` and `first_available` are gone from the server's log. */
  gap(gap: GapPayload): void;
  /** The terminal frame; nothing follows it. */
  done(done: DoneRecord): void;
}

export interface SessionStreamOptions {
  api: ServiceApi;
  sessionId: string;
  /** Resume after this id (`null`: replay everything retained). */
  lastEventId: string | null;
  /** Stops following; the run then fails with `aborted`. */
  signal: AbortSignal;
  reconnect: Required<ReconnectOptions>;
  /** Silence (not even `: ping`) after which the connection counts as dropped; `null` = off. */
  stallTimeoutMs: number | null;
  /** `Math.random` unless a test pins the jitter. */
  random: () => number;
}

/** One connection's end, when it did not end the run. */
interface Drop {
  reachedReady: boolean;
  error: TimelineError;
  /** The server's `Retry-After`, when it answered 503/429 with one. */
  retryAfterMs: number | null;
}

const isRetryableStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500;

function parseData<T>(message: EventSourceMessage): T {
  try {
    return JSON.parse(message.data) as T;
  } catch (error) {
    throw new TimelineError('protocol_error', `The server sent ${message.event ?? 'an event'} whose data is not JSON`, {
      cause: error,
    });
  }
}

/**
 * Follows one session's SSE stream to its `done`: reconnects with `Last-Event-ID` after a
 * drop (backoff with jitter, the server's `retry:` and `Retry-After` honoured), drops
 * replayed duplicates, and fails with a typed error on what retrying cannot fix.
 */
export class SessionStream {
  private lastId: string | null;
  private baseDelayMs: number;

  constructor(
    private readonly options: SessionStreamOptions,
    private readonly sink: StreamSink,
  ) {
    this.lastId = options.lastEventId;
    this.baseDelayMs = options.reconnect.initialDelayMs;
  }

  /** Resolves once `done` was delivered; rejects with a {@link TimelineError}. */
  async run(): Promise<void> {
    const { signal, reconnect, random } = this.options;
    let failedInARow = 0;
    for (;;) {
      const drop = await this.connect();
      if (drop === null) return;
      failedInARow = drop.reachedReady ? 0 : failedInARow + 1;
      if (failedInARow >= reconnect.maxAttempts) {
        throw new TimelineError(
          'retries_exhausted',
          `Gave up on the stream of session ${this.options.sessionId} after ${failedInARow} failed attempts in a row: ${drop.error.message}`,
          { status: drop.error.status, cause: drop.error },
        );
      }
      this.sink.reconnecting();
      const backoff = reconnectDelay(failedInARow + 1, this.baseDelayMs, reconnect.maxDelayMs, random);
      await sleep(Math.max(backoff, drop.retryAfterMs ?? 0), signal, () => abortedError(signal));
    }
  }

  /** One connection: `null` once `done` was delivered, else how it dropped. Throws what is fatal. */
  private async connect(): Promise<Drop | null> {
    const { api, sessionId, signal, stallTimeoutMs } = this.options;
    if (signal.aborted) throw abortedError(signal);
    const connection = new AbortController();
    const abort = () => connection.abort(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    let stalled = false;
    const stall = watchForStall(stallTimeoutMs, () => {
      stalled = true;
      connection.abort();
    });
    let reachedReady = false;
    try {
      let response: Response;
      try {
        response = await api.openStream(sessionId, this.lastId, connection.signal);
      } catch (error) {
        if (signal.aborted) throw abortedError(signal);
        return { reachedReady, error: this.dropError(error, stalled), retryAfterMs: null };
      }
      if (response.status === 204) {
        await this.finishFromHistory(connection.signal);
        return null;
      }
      if (!response.ok) {
        const error = await errorFromResponse(response);
        if (!isRetryableStatus(response.status)) throw error;
        return { reachedReady, error, retryAfterMs: retryAfterMs(response.headers.get('Retry-After')) };
      }
      const contentType = response.headers.get('Content-Type') ?? '';
      if (!response.body || !contentType.toLowerCase().startsWith('text/event-stream')) {
        throw new TimelineError('protocol_error', `The stream route answered ${response.status} with "${contentType}", not an event stream`, {
          status: response.status,
        });
      }

      for await (const item of readSse(response.body, stall.alive)) {
        if (item.kind === 'retry') this.baseDelayMs = item.ms;
        if (item.kind !== 'message') continue;
        const { message } = item;
        switch (message.event) {
          case undefined:
          case 'message':
            this.deliverEvent(message);
            break;
          case 'ready':
            reachedReady = true;
            this.sink.ready(parseData<ReadyPayload>(message));
            break;
          case 'gap':
            this.sink.gap(parseData<GapPayload>(message));
            break;
          case 'expired':
            throw new TimelineError('expired', `No run started on session ${sessionId} within the server's idle timeout`);
          case 'done':
            this.deliverDone(message);
            return null;
          default:
            // A named event this SDK does not know (a newer server): skipped, as EventSource does.
            break;
        }
      }
      return { reachedReady, error: new TimelineError('network_error', 'The stream ended before done'), retryAfterMs: null };
    } catch (error) {
      if (signal.aborted) throw abortedError(signal);
      if (error instanceof TimelineError) throw error;
      return { reachedReady, error: this.dropError(error, stalled), retryAfterMs: null };
    } finally {
      stall.stop();
      signal.removeEventListener('abort', abort);
      connection.abort();
    }
  }

  private dropError(error: unknown, stalled: boolean): TimelineError {
    if (stalled) {
      return new TimelineError('network_error', `The stream was silent for ${String(this.options.stallTimeoutMs)} ms`, {
        cause: error,
      });
    }
    if (error instanceof TimelineError) return error;
    const reason = error instanceof Error ? error.message : String(error);
    return new TimelineError('network_error', `The stream broke: ${reason}`, { cause: error });
  }

  private deliverEvent(message: EventSourceMessage): void {
    const event = parseData<TimelineEvent>(message);
    const id = message.id ?? event.event_id;
    // A replay overlapping what was delivered, or anything older: never twice, never backwards.
    if (!isAfter(id, this.lastId)) return;
    this.lastId = id;
    this.sink.event(event);
  }

  private deliverDone(message: EventSourceMessage): void {
    if (message.id === undefined) {
      throw new TimelineError('protocol_error', 'The server sent done without an id');
    }
    this.lastId = message.id;
    this.sink.done({ ...parseData<DonePayload>(message), id: message.id });
  }

  /** `204`: `done` was delivered before (another tab, a reload); its payload is in the history. */
  private async finishFromHistory(signal: AbortSignal): Promise<void> {
    const history = await this.options.api.history(this.options.sessionId, signal);
    if (!history.done) {
      throw new TimelineError('protocol_error', `The stream answered 204 but session ${this.options.sessionId} has no done`);
    }
    this.lastId = history.done.id;
    this.sink.done(history.done);
  }
}
