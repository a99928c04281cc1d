import type { GapPayload, SessionStatus } from '../../client-sdk/src/types';
import { READ_PAGE_SIZE, type LogEntry, type LogSlice, type Subscription, type TimelineBus } from './bus';
import { compareEventIds } from './event-id';

export interface SessionFeedOptions {
  /** Entries read from the log at once while catching up. Defaults to `READ_PAGE_SIZE` (500). */
  pageSize?: number;
}

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
  /**
   * While catching up, called each time a live entry has to wait: the bytes of the live
   * entries now held for this reader. A reader that stalls during a replay would otherwise
   * make them pile up without bound; the sink may cut it.
   */
  held?(bytes: number): void;
  /** Caught up: from now on entries arrive live, one by one. */
  live?(): void;
}

/**
 * Joins a session's retained log and its live entries without a gap or a duplicate:
 * subscribe first, then read after the last id (a page at a time), then merge live entries by
 * id. Live entries that arrive while a read or a replay is in flight wait in `pending`.
 */
export class SessionFeed {
  private sink: FeedSink | null = null;
  private pending: LogEntry[] = [];
  /** Bytes of the live entries held for the reader: in `pending`, or taken from it and not yet delivered. */
  private heldBytes = 0;
  private catchingUp = true;
  private resyncDue = false;
  private closed = false;
  private lastId: string | null;
  /** Seq of the last event delivered (0: none yet). */
  private lastSeq = 0;
  private subscription: Subscription | null = null;
  private firstSlice: LogSlice = { status: 'waiting', entries: [], gap: null, more: false };

  private constructor(
    private readonly bus: TimelineBus,
    private readonly sessionId: string,
    afterId: string | null,
    private readonly pageSize: number,
  ) {
    this.lastId = afterId;
  }

  /** Subscribes, then reads the first page retained after `afterId`. Nothing is delivered until `start`. */
  static async open(
    bus: TimelineBus,
    sessionId: string,
    afterId: string | null,
    options: SessionFeedOptions = {},
  ): Promise<SessionFeed> {
    const feed = new SessionFeed(bus, sessionId, afterId, options.pageSize ?? READ_PAGE_SIZE);
    feed.subscription = await bus.subscribe(sessionId, {
      onEntry: (entry) => feed.onLive(entry),
      onResync: () => feed.resync(),
    });
    try {
      feed.firstSlice = await bus.read(sessionId, afterId, feed.pageSize);
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

  /** Before `start`: true when the reader already has everything, `done` included. */
  get finishedAlready(): boolean {
    const slice = this.firstSlice;
    const finished = slice.status !== 'waiting' && slice.status !== 'running';
    return finished && slice.entries.length === 0 && this.lastId !== null && this.pending.length === 0;
  }

  /** Delivers the first read, then what arrived meanwhile, then live entries as they come. */
  start(sink: FeedSink): void {
    this.sink = sink;
    const slice = this.firstSlice;
    // A stream may stay open for hours: it must not keep the first page once it is replayed.
    this.firstSlice = { ...slice, entries: [] };
    void this.catchUp(slice);
  }

  close(): void {
    this.closed = true;
    this.pending = [];
    this.heldBytes = 0;
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  private onLive(entry: LogEntry): void {
    if (this.closed) return;
    if (!this.catchingUp) {
      this.deliver(entry);
      return;
    }
    // An entry at or before the reader's position is one it has (or asked not to get); over
    // Redis, one may even come from an earlier subscription of the same channel.
    if (compareEventIds(entry.id, this.lastId) <= 0) return;
    this.pending.push(entry);
    this.heldBytes += byteSize(entry);
    this.sink?.held?.(this.heldBytes);
  }

  /** The live feed may have dropped entries: read again after the last delivered id. */
  private resync(): void {
    if (this.closed) return;
    // Before `start`, or during a catch-up: that catch-up reads again before going further.
    if (this.catchingUp) {
      this.resyncDue = true;
      return;
    }
    this.catchingUp = true;
    void this.catchUp(null);
  }

  /**
   * Replays `slice` (or, when `null`, a fresh read after the last id) and the pages after it,
   * then the live entries that arrived meanwhile, at the reader's pace; reads again while
   * resyncs were asked for; then goes live.
   */
  private async catchUp(slice: LogSlice | null): Promise<void> {
    let next = slice;
    for (;;) {
      if (next === null) {
        // A resync asked for from here on needs a read after this one.
        this.resyncDue = false;
        try {
          next = await this.bus.read(this.sessionId, this.lastId, this.pageSize);
        } catch (error) {
          if (!this.closed) this.sink?.failed(error);
          return;
        }
      }
      // A gap on a later page is real too: the cap trimmed entries while earlier ones were sent.
      if (next.gap && !this.closed) this.sink?.gap(next.gap);
      if (!(await this.deliverPaced(next.entries))) return;
      this.dropDeliveredPending();
      const more = next.more;
      next = null;
      if (more) continue;
      // While a resync is due, live entries wait: the read must first bring what the live
      // feed lost, which comes before them.
      while (!this.resyncDue && this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        if (!(await this.deliverPaced(batch, { live: true }))) return;
      }
      if (!this.resyncDue) break;
    }
    this.catchingUp = false;
    this.sink?.live?.();
  }

  /**
   * Delivers `entries`, waiting whenever the sink is backed up. With `live` (a batch taken
   * from `pending`), counts them off the held bytes, and stops when a resync becomes due,
   * putting the rest back in front of `pending`.
   * Resolves `false` if the feed closed on the way.
   */
  private async deliverPaced(entries: LogEntry[], { live = false } = {}): Promise<boolean> {
    for (let i = 0; i < entries.length; i++) {
      if (this.closed) return false;
      if (live && this.resyncDue) {
        this.pending = entries.slice(i).concat(this.pending);
        return true;
      }
      this.deliver(entries[i]);
      if (live) this.heldBytes -= byteSize(entries[i]);
      const backlog = this.sink?.backlog?.();
      if (backlog) await backlog;
    }
    return !this.closed;
  }

  /** Live entries a page already brought are no longer held for the reader. */
  private dropDeliveredPending(): void {
    let covered = 0;
    while (covered < this.pending.length && compareEventIds(this.pending[covered].id, this.lastId) <= 0) {
      this.heldBytes -= byteSize(this.pending[covered]);
      covered += 1;
    }
    if (covered > 0) this.pending = this.pending.slice(covered);
  }

  private deliver(entry: LogEntry): void {
    if (this.closed || compareEventIds(entry.id, this.lastId) <= 0) return;
    // An event the owner sent again to a Redis that restarted empty before answering has a
    // new id but the seq this reader already has.
    if (entry.seq !== undefined) {
      if (entry.seq <= this.lastSeq) return;
      this.lastSeq = entry.seq;
    }
    this.lastId = entry.id;
    this.sink?.entry(entry);
  }
}

function byteSize(entry: LogEntry): number {
  return Buffer.byteLength(entry.data);
}
