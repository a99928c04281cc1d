import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Connection } from 'better-sse';
import { wireChunk } from './sse-events';

/** The stream's response headers (the contract's), also answered to a `HEAD` probe. */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
};

const uncork = (socket: Socket) => socket.uncork();

/**
 * better-sse's `Connection` over Node's response, holding nothing a `Session` does not use.
 *
 * better-sse's own `NodeHttp1Connection` builds a WHATWG `Request`, `Response`, `URL` and
 * `AbortController` per connection and keeps them for the stream's life: at 10,000 streams per
 * instance that is megabytes. Of its connection a `Session` touches only `sendHead`,
 * `sendChunk` and `cleanup`; `request.signal`, to learn of the disconnect (its `abort`
 * listener); `url.searchParams`, once, when it sends the head; and `request.headers` only with
 * `trustClientEventId` (off here: the route reads Last-Event-ID itself, validated). So this
 * object is also the request and its abort signal, and the URL is built only when read.
 */
export class ResponseConnection extends Connection {
  private abortListener: (() => void) | null = null;

  /** `onClose` runs once, when the response closes (client gone, or the stream ended). */
  constructor(
    private readonly res: ServerResponse,
    onClose: () => void,
  ) {
    super();
    res.on('close', () => {
      this.abortListener?.();
      onClose();
    });
  }

  /** The request as a `Session` reads it: only its `signal`. */
  get request(): Request {
    return this as unknown as Request;
  }

  /** The abort signal of `request`: fires when the response closes. */
  get signal(): this {
    return this;
  }

  addEventListener(type: string, listener: () => void): void {
    if (type === 'abort') this.abortListener = listener;
  }

  removeEventListener(type: string, listener: () => void): void {
    if (type === 'abort' && this.abortListener === listener) this.abortListener = null;
  }

  get url(): URL {
    return new URL(this.res.req.url ?? '/', `http://${this.res.req.headers.host ?? Connection.constants.REQUEST_HOST}`);
  }

  /** What the head says, built when asked (a `Session` never does: the head goes straight to Node). */
  get response(): Response {
    return new Response(null, { status: 200, headers: SSE_HEADERS });
  }

  /** Sends the head at once, unless the client already left while the stream was set up. */
  sendHead(): void {
    const res = this.res;
    if (res.destroyed || res.headersSent) return;
    const socket = res.socket;
    if (socket) {
      // Each frame goes out as it is written, not held back to fill a packet.
      socket.setNoDelay(true);
      // The head leaves at the end of this tick, together with the frames written meanwhile
      // (`ready`): one write to the socket instead of two, a syscall saved per open stream.
      socket.cork();
      process.nextTick(uncork, socket);
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
  }

  sendChunk(chunk: string): void {
    // Writing to an ended response would raise an error event nobody listens to.
    if (chunk === '' || this.res.writableEnded || this.res.destroyed) return;
    this.res.write(wireChunk(chunk));
  }

  cleanup(): void {
    // Nothing to release: the only listener is on the response, which is closing.
  }

  /** Bytes written and not yet handed to the kernel: what this process holds for the reader. */
  get unsentBytes(): number {
    return this.res.destroyed ? 0 : this.res.writableLength;
  }

  /** Calls `callback` once everything written so far has been handed to the kernel, or the response closed. */
  whenFlushed(callback: () => void): void {
    if (this.res.writableEnded || this.res.destroyed) {
      process.nextTick(callback);
      return;
    }
    // A write's callback runs once it and every write before it left the socket's queue; an
    // empty one adds nothing to the body (chunked framing skips empty chunks). Unlike `drain`,
    // it comes whether or not the queue ever passed the socket's high-water mark.
    this.res.write('', () => callback());
  }
}
