import type { GapPayload, SessionStatus } from '../../client-sdk/src/types';
import { READ_PAGE_SIZE, type LiveListener, type LogEntry, type LogSlice, type Subscription, type TimelineBus } from './bus';
import { compareEventIds } from './event-id';

export interface SessionFeedOptions {
  /** Entries read from the log at once while catching up. Defaults to `READ_PAGE_SIZE` (500). */
  pageSize?: number;
  /**
   * The most bytes the reader may have waiting: live entries the feed holds for it while it
   * catches up, plus what its sink has not sent yet (`FeedSink.unsentBytes`). Past it the held
   * entries are let go and read again from the log. Also sizes the pages of a catch-up.
   * Defaults to `65536`.
   */
  maxHeldBytes?: number;
}

/** Where a feed delivers a session's log, in order, each entry once. */
export interface FeedSink {
  /**
   * Sends `entry`, or answers `false` when the reader cannot take it now (its unsent data
   * would pass its bound): nothing was sent, and the feed reads it again from the log once
   * `drained` resolves. Nothing newer is sent meanwhile.
   */
  entry(entry: LogEntry): boolean;
  gap(gap: GapPayload): void;
  /** The bus failed while catching up; the reader should reconnect and resume. */
  failed(error: unknown): void;
  /** Bytes sent to the reader's connection and not yet taken by it. */
  readonly unsentBytes: number;
  /** Resolves once everything sent so far has been taken (or the reader is gone). */
  drained(): Promise<void>;
  /** Caught up: from now on entries arrive live, one by one, until one is refused. */
  live?(): void;
}

/**
 * Joins a session's retained log and its live entries without a gap or a duplicate:
 * subscribe first, then read after the last id (a page at a time), then merge live entries by
 * id. Live entries that arrive while a read or a replay is in flight wait in `pending`.
 *
 * A reader that cannot keep up costs a bounded amount: when it refuses an entry, the feed
 * keeps nothing for it (no page, no live entry) until it has drained, then catches up from
 * the log after the last entry it took, exactly as after a lost live feed (`resync`).
 */
export class SessionFeed implements LiveListener {
  private sink: FeedSink | null = null;
  private pending: LogEntry[] = [];
  /** Bytes of the live entries in `pending`. */
  private pendingBytes = 0;
  private catchingUp = true;
  /**
   * The log must be read again before live entries go on: the live feed lost some (a bus
   * resync), or the feed let go of entries the reader could not take.
   */
  private resyncDue = false;
  /** Waiting for the reader to drain: live entries are left to the read that follows. */
  private behind = false;
  private closed = false;
  /** Id of the last entry delivered: live entries at or before it are ones the reader has. */
  private lastId: string | null;
  /** Where the next log read starts: `lastId`, or past log entries skipped as resends. */
  private readFrom: string | null;
  /** Seq of the last event delivered (0: none yet). */
  private lastSeq = 0;
  /** The gap announced last, so re-reading the same position does not announce it twice. */
  private lastGap: GapPayload | null = null;
  private subscription: Subscription | null = null;
  /** The first read, until `start` delivers it. */
  private firstSlice: LogSlice | null = null;
  private firstStatus: SessionStatus = 'waiting';
  private readonly pageSize: number;
  private readonly maxHeldBytes: number;

  private constructor(
    private readonly bus: TimelineBus,
    private readonly sessionId: string,
    afterId: string | null,
    options: SessionFeedOptions,
  ) {
    this.lastId = afterId;
    this.readFrom = afterId;
    this.pageSize = options.pageSize ?? READ_PAGE_SIZE;
    this.maxHeldBytes = options.maxHeldBytes ?? 64 * 1024;
  }

  /** Subscribes, then reads the first page retained after `afterId`. Nothing is delivered until `start`. */
  static async open(
    bus: TimelineBus,
    sessionId: string,
    afterId: string | null,
    options: SessionFeedOptions = {},
  ): Promise<SessionFeed> {
    const feed = new SessionFeed(bus, sessionId, afterId, options);
    // The feed is its own listener: no closure per stream. Live entries that come before
    // `start` wait in `pending`.
    feed.subscription = await bus.subscribe(sessionId, feed);
    try {
      feed.firstSlice = await bus.read(sessionId, afterId, feed.pageSize);
    } catch (error) {
      feed.close();
      throw error;
    }
    feed.firstStatus = feed.firstSlice.status;
    return feed;
  }

  /** The session status when the feed opened. */
  get status(): SessionStatus {
    return this.firstStatus;
  }

  /** Before `start`: true when the reader already has everything, `done` included. */
  get finishedAlready(): boolean {
    const slice = this.firstSlice;
    const finished = this.firstStatus !== 'waiting' && this.firstStatus !== 'running';
    return finished && slice !== null && slice.entries.length === 0 && this.lastId !== null && this.pending.length === 0;
  }

  /** Bytes of the live entries held for the reader while it catches up (for tests and metrics). */
  get heldBytes(): number {
    return this.pendingBytes;
  }

  /** Delivers the first read, then what arrived meanwhile, then live entries as they come. */
  start(sink: FeedSink): void {
    this.sink = sink;
    const slice = this.firstSlice;
    // A stream may stay open for hours: it must not keep the first page once it is replayed.
    this.firstSlice = null;
    void this.catchUp(slice);
  }

  close(): void {
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.firstSlice = null;
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  /** A live entry (`LiveListener`). */
  onEntry(entry: LogEntry): void {
    if (this.closed || this.behind) return;
    if (!this.catchingUp) {
      if (!this.deliver(entry, false)) this.fallBehind();
      return;
    }
    // An entry at or before the reader's position is one it has (or asked not to get); over
    // Redis, one may even come from an earlier subscription of the same channel.
    if (compareEventIds(entry.id, this.lastId) <= 0) return;
    const bytes = byteSize(entry);
    if (this.pendingBytes + bytes + (this.sink?.unsentBytes ?? 0) > this.maxHeldBytes) {
      // More than the reader may have waiting: the log has them, read them from there.
      this.letGoOfPending();
      return;
    }
    this.pending.push(entry);
    this.pendingBytes += bytes;
  }

  /** The live feed may have dropped entries (`LiveListener`): read again after the last delivered id. */
  onResync(): void {
    if (this.closed) return;
    // Before `start`, during a catch-up or while behind: the catch-up reads again before going further.
    if (this.catchingUp) {
      this.resyncDue = true;
      return;
    }
    this.catchingUp = true;
    this.resyncDue = true;
    void this.catchUp(null);
  }

  /** A live entry was refused: keep nothing, wait for the reader to drain, then catch up from the log. */
  private fallBehind(): void {
    this.catchingUp = true;
    this.resyncDue = true;
    void this.catchUp(null);
  }

  private letGoOfPending(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.resyncDue = true;
  }

  /**
   * Replays `slice` (or, when `null`, a fresh read after the last id) and the pages after it,
   * then the live entries that arrived meanwhile; reads again while resyncs were asked for;
   * then goes live. Whenever the reader refuses an entry it waits for it to drain, holding
   * nothing, and reads again from there.
   */
  private async catchUp(slice: LogSlice | null): Promise<void> {
    let next = slice;
    let limit = this.pageSize;
    for (;;) {
      if (this.closed) return;
      if (next === null) {
        if (this.sink !== null && this.sink.unsentBytes > 0 && !(await this.whenDrained())) return;
        // A resync asked for from here on needs a read after this one.
        this.resyncDue = false;
        try {
          next = await this.bus.read(this.sessionId, this.readFrom, limit);
        } catch (error) {
          if (!this.closed) this.sink?.failed(error);
          return;
        }
        if (this.closed) return;
      }
      // A gap on a later page is real too: the cap trimmed entries while earlier ones were sent.
      if (next.gap) this.announce(next.gap);
      const taken = this.deliverPage(next.entries);
      if (taken < next.entries.length) {
        // Refused: the rest of the page (and any live entry held) is read again once drained,
        // no more of it than the reader took this time.
        this.letGoOfPending();
        limit = Math.max(1, taken);
        next = null;
        continue;
      }
      limit = this.pageLimit(next.entries);
      this.dropDeliveredPending();
      const more = next.more;
      next = null;
      if (more) continue;
      // While a resync is due, live entries wait: the read must first bring what the live
      // feed lost, which comes before them.
      if (!this.resyncDue && this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        this.pendingBytes = 0;
        for (const entry of batch) {
          if (this.deliver(entry, false)) continue;
          this.resyncDue = true;
          break;
        }
      }
      if (!this.resyncDue) break;
    }
    this.catchingUp = false;
    this.sink?.live?.();
  }

  /** Waits, holding nothing, until the reader took what it was sent; `false` if the feed closed meanwhile. */
  private async whenDrained(): Promise<boolean> {
    this.behind = true;
    this.pending = [];
    this.pendingBytes = 0;
    await this.sink?.drained();
    this.behind = false;
    return !this.closed;
  }

  /** Delivers a page of the log; returns how many of its entries are done with (all but a refused one and those after it). */
  private deliverPage(entries: LogEntry[]): number {
    for (let i = 0; i < entries.length; i++) {
      if (this.closed || !this.deliver(entries[i], true)) return i;
    }
    return entries.length;
  }

  /** Entries per read so that a page is about what the reader may have waiting. */
  private pageLimit(page: LogEntry[]): number {
    if (page.length === 0) return this.pageSize;
    let bytes = 0;
    for (const entry of page) bytes += byteSize(entry);
    return Math.max(1, Math.min(this.pageSize, Math.floor((this.maxHeldBytes * page.length) / bytes)));
  }

  private announce(gap: GapPayload): void {
    const last = this.lastGap;
    if (last !== null && last.after === gap.after && last.first_available === gap.first_available) return;
    this.lastGap = gap;
    this.sink?.gap(gap);
  }

  /** Live entries a page already brought are no longer held for the reader. */
  private dropDeliveredPending(): void {
    let covered = 0;
    while (covered < this.pending.length && compareEventIds(this.pending[covered].id, this.lastId) <= 0) {
      this.pendingBytes -= byteSize(this.pending[covered]);
      covered += 1;
    }
    if (covered > 0) this.pending = this.pending.slice(covered);
  }

  /**
   * Sends `entry` unless the reader has it; `false` when the sink refused it. An entry of the
   * log (`fromLog`) skipped as a resend moves the read position past it.
   */
  private deliver(entry: LogEntry, fromLog: boolean): boolean {
    if (this.closed || compareEventIds(entry.id, this.lastId) <= 0) return true;
    // An event the owner sent again to a Redis that restarted empty before answering has a
    // new id but the seq this reader already has.
    if (entry.seq !== undefined && entry.seq <= this.lastSeq) {
      if (fromLog) this.readFrom = entry.id;
      return true;
    }
    if (this.sink !== null && !this.sink.entry(entry)) return false;
    if (entry.seq !== undefined) this.lastSeq = entry.seq;
    this.lastId = entry.id;
    this.readFrom = entry.id;
    return true;
  }
}

function byteSize(entry: LogEntry): number {
  return Buffer.byteLength(entry.data);
}
