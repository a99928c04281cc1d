import http from 'node:http';
import net from 'node:net';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Waiters } from './wait';

/** One SSE frame as a client sees it. `event` is undefined for default (unnamed) messages. */
export interface SseFrame {
  event?: string;
  id?: string;
  data: string;
}

export interface SseReader {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every frame so far, in arrival order. */
  frames: SseFrame[];
  comments: string[];
  retry: number | null;
  /** Raw text received, for wire-format assertions. */
  raw: string;
  /** Resolves with the first frame (already received or future) matching `match`. */
  waitFor(match: (frame: SseFrame) => boolean, timeoutMs?: number, label?: string): Promise<SseFrame>;
  /** Resolves when the server ends the response (or the socket closes). */
  ended: Promise<void>;
  /** Resolves once `count` comments have arrived. */
  waitForComments(count: number, timeoutMs?: number): Promise<void>;
  /** Cuts the connection like a closed tab or a broken pipe. */
  destroy(): void;
  /** Stops reading the socket, like a stalled client: the server's unsent data piles up. */
  pause(): void;
  /** Reads again after `pause`. */
  resume(): void;
}

export interface OpenOptions {
  headers?: Record<string, string>;
  /** How long to wait for the response head (not for `ready`). Defaults to `10000`. */
  timeoutMs?: number;
}

/**
 * A real-socket SSE reader (node:http + eventsource-parser), so tests see frames as they
 * arrive rather than when the response ends.
 */
export function openSse(url: string, options: OpenOptions = {}): Promise<SseReader> {
  const timeoutMs = options.timeoutMs ?? 10000;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'text/event-stream', ...options.headers } });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no response head from ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    req.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.once('response', (res) => {
      clearTimeout(timer);
      const waiters = new Waiters();
      let endedResolve: () => void = () => undefined;
      const reader: SseReader = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        frames: [],
        comments: [],
        retry: null,
        raw: '',
        ended: new Promise<void>((done) => (endedResolve = done)),
        waitFor(match, waitMs = 10000, label = 'frame') {
          // Each arrival checks only the frames this waiter has not seen yet.
          let next = 0;
          const find = () => {
            for (; next < reader.frames.length; next++) if (match(reader.frames[next])) return reader.frames[next];
            return undefined;
          };
          return waiters.until(find, waitMs, () => `${label}; got ${JSON.stringify(reader.frames.map((f) => f.event ?? f.id))}`);
        },
        async waitForComments(count, waitMs = 10000) {
          await waiters.until(
            () => (reader.comments.length >= count ? true : undefined),
            waitMs,
            () => `${count} comments; got ${reader.comments.length}`,
          );
        },
        destroy() {
          req.destroy();
        },
        pause() {
          res.pause();
        },
        resume() {
          res.resume();
        },
      };
      const parser = createParser({
        onEvent(message: EventSourceMessage) {
          reader.frames.push({ event: message.event, id: message.id, data: message.data });
          waiters.notify();
        },
        onComment(comment: string) {
          reader.comments.push(comment);
          waiters.notify();
        },
        onRetry(retry: number) {
          reader.retry = retry;
        },
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        reader.raw += chunk;
        parser.feed(chunk);
      });
      res.once('close', () => endedResolve());
      res.once('error', () => endedResolve());
      resolve(reader);
    });
  });
}

/** Opens a stream that must answer 200 and waits for `ready`: no live event can be missed after it. */
export async function openReady(url: string, options: OpenOptions = {}): Promise<SseReader> {
  const reader = await openSse(url, options);
  if (reader.status !== 200) {
    reader.destroy();
    throw new Error(`${url} answered ${reader.status}, not 200: ${reader.raw}`);
  }
  await reader.waitFor(isNamed('ready'));
  return reader;
}

/**
 * Opens ready streams (`openReady`) and keeps them, so that `closeAll` in an `afterEach`
 * closes whatever a test left open, failed tests included.
 */
export interface StreamFollower {
  /** `openReady` on `<baseUrl>/timeline/stream/<sessionId>`; the reader is kept for `closeAll`. */
  follow(baseUrl: string, sessionId: string, headers?: Record<string, string>): Promise<SseReader>;
  closeAll(): void;
}

export function streamFollower(): StreamFollower {
  const open: SseReader[] = [];
  return {
    async follow(baseUrl, sessionId, headers = {}) {
      const reader = await openReady(`${baseUrl}/timeline/stream/${sessionId}`, { headers });
      open.push(reader);
      return reader;
    },
    closeAll() {
      for (const reader of open.splice(0)) reader.destroy();
    },
  };
}

/**
 * Writes `GET /timeline/stream/<sessionId>` on a raw socket and nothing else: no parser, no
 * response handling, so a test controls exactly when the client leaves or stops reading.
 * `to` is a port on 127.0.0.1 or a Unix socket path. Resolves once the request is written.
 * `stalled`: the socket never reads, like a client that stopped reading.
 */
export function sendStreamRequest(
  to: number | string,
  sessionId: string,
  { stalled = false }: { stalled?: boolean } = {},
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      // Paused here, before Node's first read, the response stays in the kernel's buffers:
      // paused any later, the socket has already pulled up to its highWaterMark into this process.
      if (stalled) socket.pause();
      socket.write(
        `GET /timeline/stream/${sessionId} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`,
        () => resolve(socket),
      );
    };
    const socket = typeof to === 'number' ? net.connect(to, '127.0.0.1', onConnect) : net.connect(to, onConnect);
    socket.once('error', reject);
  });
}

/** Timeline events (default messages) of a reader, parsed. */
export function timelineEvents<T = Record<string, unknown>>(reader: SseReader): T[] {
  return reader.frames.filter((frame) => frame.event === undefined).map((frame) => JSON.parse(frame.data) as T);
}

export const isNamed = (name: string) => (frame: SseFrame) => frame.event === name;

/** Matches the first timeline event whose seq is at least `seq` (in an ordered stream: that seq). */
export const seqAtLeast = (seq: number) => (frame: SseFrame) =>
  frame.event === undefined && (JSON.parse(frame.data) as { seq: number }).seq >= seq;

/** One field line of an SSE frame as the spec reads it: `[name, value]`; a comment has the name `''`. */
export type WireField = [name: string, value: string];

/**
 * The frames of a raw SSE body, each as its field lines, parsed as the spec says
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
 * lines end with CRLF, LF or CR, a blank line ends a frame, a field's value starts after its
 * colon and one optional space. For tests about the wire format without matching bytes.
 */
export function wireFrames(raw: string): WireField[][] {
  const frames: WireField[][] = [];
  let frame: WireField[] = [];
  for (const line of raw.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (frame.length > 0) frames.push(frame);
      frame = [];
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    frame.push([name, value]);
  }
  return frames;
}

/** The `retry:` the server sent alone as its last frame (the shutdown hand-over hint); `null` if none. */
export function trailingRetry(reader: SseReader): number | null {
  const last = wireFrames(reader.raw).at(-1);
  const complete = /(\r\n|\r|\n){2}$/.test(reader.raw);
  return complete && last?.length === 1 && last[0][0] === 'retry' ? Number(last[0][1]) : null;
}

/** An SSE response read to its end through supertest (`sseBody`). */
export interface SseBody {
  frames: SseFrame[];
  comments: string[];
  retry: number | null;
  raw: string;
}

/**
 * A supertest/superagent `.parse()` for `text/event-stream`: reads the response with
 * eventsource-parser as it arrives, calling `onFrame` for each frame (a test can act on
 * `ready` while the stream is open), and gives the whole stream as `res.body` once the server
 * ends it. Use with `.buffer(true)`.
 */
export function sseBody(onFrame: (frame: SseFrame) => void = () => undefined) {
  return (response: unknown, done: (error: Error | null, body: SseBody) => void): void => {
    const res = response as NodeJS.ReadableStream;
    const body: SseBody = { frames: [], comments: [], retry: null, raw: '' };
    const parser = createParser({
      onEvent({ event, id, data }) {
        const frame = { event, id, data };
        body.frames.push(frame);
        onFrame(frame);
      },
      onComment: (comment) => body.comments.push(comment),
      onRetry: (retry) => (body.retry = retry),
    });
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      body.raw += chunk;
      parser.feed(chunk);
    });
    res.on('end', () => done(null, body));
    res.on('error', (error: Error) => done(error, body));
  };
}
