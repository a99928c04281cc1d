import { Session } from 'better-sse';
import type { Request, Response } from 'express';
import { messageFrame, namedFrame, PING_FRAME, retryField } from './sse-frames';

export interface SseStreamOptions {
  /**
   * How far behind a reader may fall before it is cut (it resumes from its last id): its
   * unsent bytes, plus what the server holds for it while it catches up.
   */
  maxBufferedBytes: number;
  /** Called once when the reader is cut for being too slow. */
  onSlowReader: () => void;
}

/** The stream's response headers (DESIGN.md), also answered to a `HEAD` probe. */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
};

/**
 * One SSE response. better-sse owns the connection (head flushed at once, disconnect
 * detection); the frames are ours because timeline events need exact ids and no event name,
 * and the first frame carries `retry:` together with `event: ready`.
 */
export class SseStream {
  private readonly closeListeners: Array<() => void> = [];
  private wroteSinceTick = false;
  private ended = false;
  private closed = false;
  /**
   * While replaying, the writer waits for `drain` instead of cutting the reader on its unsent
   * bytes alone; what piles up elsewhere meanwhile is checked by `cutIfBehind`.
   */
  private paced = true;
  /** Unsent bytes above which a replay waits for `drain`. */
  private readonly lowWaterBytes: number;

  private constructor(
    private readonly res: Response,
    session: Session,
    private readonly options: SseStreamOptions,
  ) {
    this.lowWaterBytes = Math.min(64 * 1024, options.maxBufferedBytes / 2);
    session.once('disconnected', () => {
      this.closed = true;
      for (const listener of this.closeListeners.splice(0)) listener();
    });
  }

  /** Sends the head at once; resolves when the stream can be written. */
  static open(req: Request, res: Response, options: SseStreamOptions): Promise<SseStream> {
    const session = new Session(req, res, {
      retry: null,
      keepAlive: null,
      trustClientEventId: false,
      // better-sse's defaults add Pragma; the contract's headers are ours.
      headers: { ...SSE_HEADERS, Pragma: undefined },
    });
    // Built before `connected` so a client that leaves during the handshake is still seen.
    const stream = new SseStream(res, session, options);
    return new Promise((resolve) => session.once('connected', () => resolve(stream)));
  }

  get isOpen(): boolean {
    return !this.ended && !this.closed;
  }

  /** Runs `listener` once when the client goes away or the stream is ended. */
  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  /** The first frame: the reconnection delay and `event: ready`. */
  ready(retryMs: number, data: string): void {
    this.write(retryField(retryMs) + namedFrame('ready', data));
  }

  /** A default (unnamed) message: a timeline event. `data` is already JSON. */
  message(id: string, data: string): void {
    this.write(messageFrame(id, data));
  }

  /** A named event; `id` only where the client should resume after it (`done`). */
  named(name: string, data: string, id?: string): void {
    this.write(namedFrame(name, data, id));
  }

  /** Sends `: ping` unless something was written since the last tick. */
  keepAliveTick(): void {
    if (this.wroteSinceTick) {
      this.wroteSinceTick = false;
      return;
    }
    this.write(PING_FRAME);
    this.wroteSinceTick = false;
  }

  /**
   * While replaying: a promise that resolves once the socket drained (or closed) when its
   * unsent data passed the low-water mark, else `null`.
   */
  backlog(): Promise<void> | null {
    if (!this.isOpen || this.res.writableLength < this.lowWaterBytes) {
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

  private write(frame: string): void {
    if (!this.isOpen) return;
    this.res.write(frame);
    this.wroteSinceTick = true;
    // Respect back-pressure: a reader that cannot keep up is cut, not buffered without bound.
    if (!this.paced) this.cutIfBehind();
  }
}
