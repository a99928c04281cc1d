import type { FetchLike } from '../../src/api';
import type { DonePayload, GapPayload, ReadyPayload, SessionStatus, TimelineEvent } from '../../src/types';
import { draft, range } from '../../../test/helpers/timeline-fixtures';
import { Waiters } from '../../../test/helpers/wait';

/**
 * A scripted stand-in for the service behind the SDK's injectable `fetch`, for unit tests of
 * the SDK's own logic (reconnect, backoff, dedupe). Integration tests use a real server.
 */

export interface FakeRequest {
  url: string;
  method: string;
  headers: Headers;
  body: string | null;
  signal: AbortSignal | null;
  /** `Date.now()` when the SDK sent it. */
  at: number;
}

/** One open SSE response the test writes to. */
export interface FakeStream {
  request: FakeRequest;
  send(text: string): void;
  /** The server ends the response cleanly. */
  end(): void;
  /** The connection breaks mid-body (a reset socket). */
  cut(): void;
  /** Resolves when the client went away (aborted or cancelled the body) or the stream ended. */
  closed: Promise<void>;
  readonly isClosed: boolean;
}

type Answer = (request: FakeRequest) => Response | Promise<Response>;

export const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });

export const errorJson = (status: number, code: string, headers: Record<string, string> = {}): Response =>
  json(status, { error: { code, message: `fake ${code}` } }, headers);

export class FakeService {
  readonly requests: FakeRequest[] = [];
  /** One-off answers for the next stream requests, in order; then an open event stream. */
  readonly streamAnswers: Answer[] = [];
  executeAnswer: Answer = (request) => json(202, { session_id: sessionOf(request), stream_url: '' });
  cancelAnswer: Answer = (request) => json(202, { session_id: sessionOf(request), status: 'cancelling' });
  historyAnswer: Answer = () => errorJson(404, 'session_not_found');
  private readonly streams: FakeStream[] = [];
  private taken = 0;
  private readonly waiters = new Waiters();

  readonly fetch: FetchLike = async (url, init) => {
    const request: FakeRequest = {
      url,
      method: init.method ?? 'GET',
      headers: new Headers(init.headers),
      body: typeof init.body === 'string' ? init.body : null,
      signal: init.signal ?? null,
      at: Date.now(),
    };
    if (request.signal?.aborted) throw request.signal.reason;
    this.requests.push(request);
    this.waiters.notify();
    const path = new URL(url).pathname;
    if (path.startsWith('/timeline/stream/')) {
      const answer = this.streamAnswers.shift();
      return answer ? answer(request) : this.openStream(request);
    }
    if (path === '/execute') return this.executeAnswer(request);
    if (path.endsWith('/cancel')) return this.cancelAnswer(request);
    return this.historyAnswer(request);
  };

  /** Requests to `path` (a prefix) so far. */
  requestsTo(pathPrefix: string): FakeRequest[] {
    return this.requests.filter((request) => new URL(request.url).pathname.startsWith(pathPrefix));
  }

  /** The next stream connection (in order) the SDK opens. */
  nextStream(timeoutMs = 5000): Promise<FakeStream> {
    const index = this.taken++;
    return this.waitFor(() => this.streams[index], timeoutMs, `stream connection #${index + 1}`);
  }

  /** Resolves once `count` requests matched `match` (or fails after `timeoutMs`). */
  waitForRequests(match: (request: FakeRequest) => boolean, count: number, timeoutMs = 5000): Promise<FakeRequest[]> {
    return this.waitFor(
      () => {
        const found = this.requests.filter(match);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
      `${count} matching requests`,
    );
  }

  /** Resolves with what `find` returns once it is defined, checked after every request and stream. */
  private waitFor<T>(find: () => T | undefined, timeoutMs: number, label: string): Promise<T> {
    return this.waiters.until(find, timeoutMs, () => label);
  }

  private openStream(request: FakeRequest): Response {
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let isClosed = false;
    let onClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (onClosed = resolve));
    const close = () => {
      isClosed = true;
      onClosed();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      cancel: close,
    });
    // As real fetch does: aborting the request errors the body being read.
    request.signal?.addEventListener('abort', () => {
      if (isClosed) return;
      controller.error(new DOMException('This operation was aborted', 'AbortError'));
      close();
    });
    const stream: FakeStream = {
      request,
      send: (text) => {
        if (!isClosed) controller.enqueue(encoder.encode(text));
      },
      end: () => {
        if (isClosed) return;
        controller.close();
        close();
      },
      cut: () => {
        if (isClosed) return;
        controller.error(new TypeError('terminated: other side closed'));
        close();
      },
      closed,
      get isClosed() {
        return isClosed;
      },
    };
    // Handed to the test only once the SDK holds the response and reads its body: data sent and
    // then cut at once must reach the SDK before the error, as it does from a real socket.
    setImmediate(() => {
      this.streams.push(stream);
      this.waiters.notify();
    });
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  }
}

function sessionOf(request: FakeRequest): string {
  return request.body ? (JSON.parse(request.body) as { session_id: string }).session_id : '';
}

// Wire frames as the contract shows them, built by hand here so the SDK is tested against the
// contract rather than against the server's own frame helpers (the server writes them through
// better-sse, without the optional space after each field's colon; the SDK's integration
// suites read those).

export const eventId = (seq: number): string => `${1_700_000_000_000 + seq}-0`;

/** A step whose details are the fixture's, not one of the built-in workflows' (the SDK passes details through). */
export const timelineEvent = (sessionId: string, seq: number): TimelineEvent =>
  ({ event_id: eventId(seq), ...draft(sessionId, seq) }) as TimelineEvent;

export const readyFrame = (sessionId: string, status: SessionStatus = 'waiting', retryMs = 20): string =>
  `retry: ${retryMs}\nevent: ready\ndata: ${JSON.stringify({ session_id: sessionId, status } satisfies ReadyPayload)}\n\n`;

export const eventFrame = (sessionId: string, seq: number): string =>
  `id: ${eventId(seq)}\ndata: ${JSON.stringify(timelineEvent(sessionId, seq))}\n\n`;

export const eventFrames = (sessionId: string, from: number, to: number): string =>
  range(from, to)
    .map((seq) => eventFrame(sessionId, seq))
    .join('');

export const doneFrame = (id: string, done: DonePayload): string => `event: done\nid: ${id}\ndata: ${JSON.stringify(done)}\n\n`;

export const gapFrame = (gap: GapPayload): string => `event: gap\ndata: ${JSON.stringify(gap)}\n\n`;

export const PING = ': ping\n\n';
