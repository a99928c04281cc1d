import type { ServerResponse } from 'node:http';
import { type EventBuffer, Session, type SessionOptions } from 'better-sse';
import type { GapPayload, ReadyPayload } from '../../client-sdk/src/types';
import type { LogEntry } from '../timeline/bus';
import type { FeedSink, SessionFeed } from '../timeline/session-feed';
import { ResponseConnection } from './sse-connection';
import { entryEvent, EXPIRED_DATA, namedEvent, PASS_THROUGH, PING, readyEvent, retryEvent } from './sse-events';
import type { RegisteredStream, StreamRegistry } from './stream-registry';

/**
 * Sessions send what they are given, as given. No `retry:` of better-sse's own (ours comes
 * with `ready`), no keep-alive timer per session (the registry's one ticker pings idle
 * streams), no Last-Event-ID read from the request (the route validates it), and no state
 * object per session.
 */
const SESSION_OPTIONS: SessionOptions = {
  ...PASS_THROUGH,
  retry: null,
  keepAlive: null,
  trustClientEventId: false,
  state: Object.freeze({}),
};

/** What HTTP's chunked encoding adds to each write: its size in hex and two line ends. */
const CHUNK_FRAMING_BYTES = 12;

/**
 * One reader's SSE stream: a better-sse `Session` over its response, fed by its session's
 * `SessionFeed`, from `ready` to its close. Everything it writes goes through the session.
 *
 * A reader that stops taking what it is sent costs at most `MAX_BUFFERED_BYTES`: an event is
 * written only while the socket's unsent bytes and the event fit in it (an event bigger than
 * that goes alone into an empty queue); otherwise the event is refused, the feed keeps nothing
 * for the reader and catches it up from the log once it has drained. A reader stalled longer
 * than `SLOW_READER_TIMEOUT_MS` is closed; its client resumes with Last-Event-ID.
 */
export class SseStream implements FeedSink, RegisteredStream {
  lastWriteTick: number;
  private readonly connection: ResponseConnection;
  private readonly session: Session;
  /** The session had no run yet when the stream opened: it expires unless one starts. */
  private waiting: boolean;
  /** The stream was live (caught up) when its reader refused an event. */
  private fellBehindLive = false;
  /** The feed delivers live (it caught up), so a refusal now means falling behind. */
  private caughtUp = false;
  /** better-sse sent the head: events may be written. */
  private headSent = false;
  private ended = false;
  private closed = false;
  /** A shutdown hand-over asked for before the head was out: sent right after it. */
  private handOverRetryMs: number | null = null;
  /** Resolves a `drained()` in progress. */
  private onDrained: (() => void) | null = null;

  private constructor(
    private readonly res: ServerResponse,
    private readonly feed: SessionFeed,
    private readonly sessionId: string,
    private readonly registry: StreamRegistry,
  ) {
    this.lastWriteTick = registry.timers.tick;
    this.waiting = feed.status === 'waiting';
    this.connection = new ResponseConnection(res, () => this.onClosed());
    this.session = new Session(this.connection, SESSION_OPTIONS);
    this.session.once('connected', () => this.start());
  }

  /**
   * Opens the stream of a reserved slot: better-sse sends the head on the next turn of the
   * event loop, then `ready` and the feed follow.
   */
  static open(res: ServerResponse, feed: SessionFeed, sessionId: string, registry: StreamRegistry): SseStream {
    const stream = new SseStream(res, feed, sessionId, registry);
    registry.open(stream);
    // The client left while the stream was set up: its `close` came already.
    if (res.destroyed) stream.onClosed();
    return stream;
  }

  private get isOpen(): boolean {
    return this.headSent && !this.ended && !this.closed;
  }

  get unsentBytes(): number {
    return this.connection.unsentBytes;
  }

  /** The head is out: `retry:` and `ready` (sent only now that the feed is subscribed), then the log. */
  private start(): void {
    if (this.closed) return;
    this.headSent = true;
    if (this.handOverRetryMs !== null) {
      this.redirect(this.handOverRetryMs);
      return;
    }
    this.registry.started(this, this.waiting);
    const ready: ReadyPayload = { session_id: this.sessionId, status: this.feed.status };
    this.send(readyEvent(this.registry.retryMs, JSON.stringify(ready)));
    this.feed.start(this);
  }

  entry(entry: LogEntry): boolean {
    if (!this.isOpen) return true;
    if (this.waiting) {
      this.waiting = false;
      this.registry.runStarted(this);
    }
    const encoded = entryEvent(entry);
    const unsent = this.connection.unsentBytes;
    if (unsent > 0 && unsent + encoded.bytes + CHUNK_FRAMING_BYTES > this.registry.maxBufferedBytes) {
      this.fellBehindLive ||= this.caughtUp;
      this.caughtUp = false;
      return false;
    }
    this.send(encoded.event);
    if (entry.kind === 'done') this.end();
    return true;
  }

  gap(gap: GapPayload): void {
    this.send(namedEvent('gap', JSON.stringify(gap)));
  }

  failed(error: unknown): void {
    this.registry.log.warn({ err: error, session_id: this.sessionId }, 'bus failed under a stream; ending it so the client resumes');
    this.end();
  }

  /** Stalled until the reader took what it was sent: closed if that takes longer than the slow-reader timeout. */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      this.onDrained = resolve;
      this.registry.timers.stalled(this);
      this.connection.whenFlushed(() => this.flushed());
    });
  }

  live(): void {
    this.caughtUp = true;
    if (this.fellBehindLive) {
      this.fellBehindLive = false;
      this.registry.slowReaderCaughtUp();
    }
  }

  /** A keep-alive comment (the registry's ticker sends it only while the stream is idle). */
  ping(): void {
    this.send(PING);
  }

  /** Ends a stream whose session had no run within the idle timeout. */
  expire(): void {
    this.send(namedEvent('expired', EXPIRED_DATA));
    this.end();
  }

  /** Closes a stream whose reader stayed stalled past the slow-reader timeout: its client resumes from its last id. */
  closeStalled(): void {
    if (this.closed) return;
    this.registry.slowReaderClosed();
    this.registry.log.info({ session_id: this.sessionId }, 'slow reader closed after stalling; it can resume from its last id');
    // Not `end()`: the end of the body would queue behind what the reader does not take.
    this.ended = true;
    this.res.destroy();
  }

  /**
   * Ends the stream without `done`, asking the client to reconnect after `retryMs` (with its
   * last id, which any instance can serve): the way an instance that shuts down hands its
   * readers over.
   */
  redirect(retryMs: number): void {
    if (!this.headSent) {
      this.handOverRetryMs = retryMs;
      return;
    }
    this.send(retryEvent(retryMs));
    this.end();
    // The connection goes too (once flushed): a keep-alive client or balancer must not send
    // the reconnect back to an instance that is going away.
    this.res.socket?.end();
  }

  private end(): void {
    if (this.ended || this.closed) return;
    this.ended = true;
    this.res.end();
  }

  private send(event: EventBuffer): void {
    if (!this.isOpen) return;
    // `batch` with an EventBuffer writes at once; its promise settles with nothing to report.
    void this.session.batch(event);
    this.lastWriteTick = this.registry.timers.tick;
  }

  private flushed(): void {
    this.registry.timers.drained(this);
    const resolve = this.onDrained;
    this.onDrained = null;
    resolve?.();
  }

  /** The response closed (the client left, or the stream ended): the one way out. */
  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.feed.close();
    this.registry.close(this);
    this.flushed();
    this.registry.log.debug({ session_id: this.sessionId }, 'stream closed');
  }
}
