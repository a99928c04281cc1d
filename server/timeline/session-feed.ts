import type { GapPayload, SessionStatus } from '../../client-sdk/src/types';
import type { LogEntry, LogSlice, Subscription, TimelineBus } from './bus';
import { compareEventIds } from './event-id';

/** Where a feed delivers a session's log, in order, each entry once. */
export interface FeedSink {
  entry(entry: LogEntry): void;
  gap(gap: GapPayload): void;
  /** The bus failed while catching up; the reader should reconnect and resume. */
  failed(error: unknown): void;
  /**
   * While catching up, called after each entry: a promise means "wait before the next one"
   * (the socket is backed up), so a large replay follows the reader's pace instead of
   * piling up in memory.
   */
  backlog?(): Promise<void> | null;
  /** Caught up: from now on entries arrive live, one by one. */
  live?(): void;
}

/**
 * Joins a session's retained log and its live entries without a gap or a duplicate:
 * subscribe first, then read after the last id, then merge live entries by id.
 * Live entries that arrive while a read or a replay is in flight wait in `pending`.
 */
export class SessionFeed {
  private sink: FeedSink | null = null;
  private pending: LogEntry[] = [];
  private catchingUp = true;
  private resyncAgain = false;
  private closed = false;
  private lastId: string | null;
  private subscription: Subscription | null = null;
  private firstSlice: LogSlice = { status: 'waiting', entries: [], gap: null };

  private constructor(
    private readonly bus: TimelineBus,
    private readonly sessionId: string,
    afterId: string | null,
  ) {
    this.lastId = afterId;
  }

  /** Subscribes, then reads what is retained after `afterId`. Nothing is delivered until `start`. */
  static async open(bus: TimelineBus, sessionId: string, afterId: string | null): Promise<SessionFeed> {
    const feed = new SessionFeed(bus, sessionId, afterId);
    feed.subscription = await bus.subscribe(sessionId, {
      onEntry: (entry) => feed.onLive(entry),
      onResync: () => void feed.resync(),
    });
    try {
      feed.firstSlice = await bus.read(sessionId, afterId);
    } catch (error) {
      feed.close();
      throw error;
    }
    return feed;
  }

  /** The session status when the feed opened. */
  get status(): SessionStatus {
    return this.firstSlice.status;
  }

  /** True when the reader already has everything, `done` included: nothing left to stream. */
  get finishedAlready(): boolean {
    const slice = this.firstSlice;
    const finished = slice.status !== 'waiting' && slice.status !== 'running';
    return finished && slice.entries.length === 0 && this.lastId !== null && this.pending.length === 0;
  }

  /** Delivers the first read, then what arrived meanwhile, then live entries as they come. */
  start(sink: FeedSink): void {
    this.sink = sink;
    void this.catchUp(this.firstSlice);
  }

  close(): void {
    this.closed = true;
    this.pending = [];
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  private onLive(entry: LogEntry): void {
    if (this.closed) return;
    if (this.catchingUp) this.pending.push(entry);
    else this.deliver(entry);
  }

  /** The live feed may have dropped entries: read again after the last delivered id. */
  private async resync(): Promise<void> {
    if (this.closed || this.sink === null) return;
    if (this.catchingUp) {
      this.resyncAgain = true;
      return;
    }
    this.catchingUp = true;
    let slice: LogSlice;
    try {
      slice = await this.bus.read(this.sessionId, this.lastId);
    } catch (error) {
      if (!this.closed) this.sink.failed(error);
      return;
    }
    await this.catchUp(slice);
  }

  /** Replays `slice` and then the pending live entries at the reader's pace, then goes live. */
  private async catchUp(slice: LogSlice): Promise<void> {
    this.catchingUp = true;
    if (slice.gap && !this.closed) this.sink?.gap(slice.gap);
    if (!(await this.deliverPaced(slice.entries))) return;
    while (this.pending.length > 0) {
      const pending = this.pending;
      this.pending = [];
      if (!(await this.deliverPaced(pending))) return;
    }
    if (this.resyncAgain) {
      this.resyncAgain = false;
      this.catchingUp = false;
      await this.resync();
      return;
    }
    this.catchingUp = false;
    this.sink?.live?.();
  }

  /** Resolves `false` if the feed closed on the way. */
  private async deliverPaced(entries: LogEntry[]): Promise<boolean> {
    for (const entry of entries) {
      if (this.closed) return false;
      this.deliver(entry);
      const backlog = this.sink?.backlog?.();
      if (backlog) await backlog;
    }
    return !this.closed;
  }

  private deliver(entry: LogEntry): void {
    if (this.closed || compareEventIds(entry.id, this.lastId) <= 0) return;
    this.lastId = entry.id;
    this.sink?.entry(entry);
  }
}
