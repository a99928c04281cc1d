import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ExpiredPayload } from '../../client-sdk/src/types';
import type { LogEntry } from '../timeline/bus';
import { eventFrame, namedFrame, PING_FRAME, retryField } from './sse-frames';
import type { TimedStream } from './stream-timers';

export interface SseStreamOptions {
  /**
   * How far behind a reader may fall before it is cut (it resumes from its last id): its
   * unsent bytes, plus what the server holds for it while it catches up.
   */
  maxBufferedBytes: number;
  /** Called once when the reader is cut for being too slow. */
  onSlowReader: () => void;
  /** The instance's stream timers, whose `tick` each write records for the keep-alive. */
  clock: { readonly tick: number };
}

/** The stream's response headers (docs/protocol.md), also answered to a `HEAD` probe. */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
};

const uncork = (socket: Socket) => socket.uncork();

const EXPIRED_DATA = JSON.stringify({ code: 'idle_timeout' } satisfies ExpiredPayload);

/**
 * One SSE response, written straight to Node's response: the head at once, then our own
 * frames (timeline events need exact ids and no event name, and the first frame carries
 * `retry:` together with `event: ready`). Nothing per stream beyond this object and the
 * response's own `close` listener: at 10,000 open streams per instance every object counts.
 */
export class SseStream implements TimedStream {
  lastWriteTick: number;
  private closeListener: (() => void) | null = null;
  private ended = false;
  private closed = false;
  /**
   * While replaying, the writer waits for `drain` instead of cutting the reader on its unsent
   * bytes alone; what piles up elsewhere meanwhile is checked by `cutIfBehind`.
   */
  private paced = true;

  private constructor(
    private readonly res: ServerResponse,
    private readonly options: SseStreamOptions,
  ) {
    this.lastWriteTick = options.clock.tick;
  }

  /**
   * Sends the head at once. A client that is already gone (it left while the stream was being
   * set up) gives a stream that is closed from the start; one that leaves later closes it.
   */
  static open(req: IncomingMessage, res: ServerResponse, options: SseStreamOptions): SseStream {
    const stream = new SseStream(res, options);
    if (req.socket.destroyed || res.destroyed) {
      stream.closed = true;
      return stream;
    }
    res.once('close', () => stream.onResponseClosed());
    const socket = req.socket;
    // Each frame goes out as it is written, not held back to fill a packet.
    socket.setNoDelay(true);
    // The head leaves at the end of this tick whatever happens, together with the frames
    // written meanwhile (`ready`): one write to the socket instead of two, a syscall saved
    // per open stream.
    socket.cork();
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    process.nextTick(uncork, socket);
    return stream;
  }

  get isOpen(): boolean {
    return !this.ended && !this.closed;
  }

  /** Runs `listener` once when the client goes away or the stream is ended (one listener). */
  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListener = listener;
  }

  /** The first frame: the reconnection delay and `event: ready`. */
  ready(retryMs: number, data: string): void {
    this.write(retryField(retryMs) + namedFrame('ready', data));
  }

  /** A timeline event, as a default (unnamed) message. */
  message(entry: LogEntry): void {
    this.write(eventFrame(entry));
  }

  /** A named event; `id` only where the client should resume after it (`done`). */
  named(name: string, data: string, id?: string): void {
    this.write(namedFrame(name, data, id));
  }

  /** A keep-alive comment (the stream timers send it only while the stream is idle). */
  ping(): void {
    this.write(PING_FRAME);
  }

  /** Ends a stream whose session had no run within the idle timeout. */
  expire(): void {
    this.named('expired', EXPIRED_DATA);
    this.end();
  }

  /**
   * While replaying: a promise that resolves once the socket drained (or closed) when its
   * unsent data passed the low-water mark, else `null`.
   */
  backlog(): Promise<void> | null {
    const lowWaterBytes = Math.min(64 * 1024, this.options.maxBufferedBytes / 2);
    if (!this.isOpen || this.res.writableLength < lowWaterBytes) {
      return null;
    }
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.once('drain', done);
      this.res.once('close', done);
    });
  }

  /** Caught up: from now on a reader that falls `maxBufferedBytes` behind is cut. */
  goLive(): void {
    this.paced = false;
  }

  /**
   * Cuts the reader once `held` (what the server keeps for it besides the socket, e.g. live
   * entries waiting while it replays) and its unsent bytes pass `maxBufferedBytes`: pacing a
   * replay must not let a stalled reader hold the run's output without bound.
   */
  cutIfBehind(held = 0): void {
    if (!this.isOpen || held + this.res.writableLength <= this.options.maxBufferedBytes) return;
    this.ended = true;
    this.options.onSlowReader();
    this.res.destroy();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.res.end();
  }

  /**
   * Ends the stream without `done`, asking the client to reconnect after `retryMs` (with its
   * last id, which any instance can serve): the way an instance that shuts down hands its
   * readers over. A `retry:` field alone is a valid frame; no event is dispatched for it.
   */
  redirect(retryMs: number): void {
    this.write(`${retryField(retryMs)}\n`);
    this.end();
    // The connection goes too (once flushed): a keep-alive client or balancer must not send
    // the reconnect back to an instance that is going away.
    this.res.socket?.end();
  }

  private onResponseClosed(): void {
    this.closed = true;
    const listener = this.closeListener;
    this.closeListener = null;
    listener?.();
  }

  private write(frame: string | Buffer): void {
    if (!this.isOpen) return;
    this.res.write(frame);
    this.lastWriteTick = this.options.clock.tick;
    // Respect back-pressure: a reader that cannot keep up is cut, not buffered without bound.
    if (!this.paced) this.cutIfBehind();
  }
}
