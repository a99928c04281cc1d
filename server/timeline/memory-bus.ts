import type { DonePayload, SessionStatus } from '../../client-sdk/src/types';
import type {
  CancelRequestOutcome,
  ClaimOptions,
  EventDraft,
  LiveListener,
  LogEntry,
  LogSlice,
  PublishOptions,
  Subscription,
  TimelineBus,
} from './bus';
import { serializeEvent } from './bus';
import { compareEventIds, EventIdGenerator } from './event-id';

/** Options of the in-memory bus; mirror the Redis retention settings. */
export interface MemoryBusOptions {
  /** Seconds a session's log is kept after its last write. Defaults to `3600`. */
  eventTtlS?: number;
  /** Newest events kept per session; older ones are trimmed. Defaults to `10000`. */
  maxEventsPerSession?: number;
  /** How often expired sessions are reclaimed. Defaults to a tenth of the TTL (at most 60 s). */
  sweepIntervalMs?: number;
  /** Clock, for tests. Defaults to `Date.now`. */
  now?: () => number;
}

interface SessionLog {
  status: SessionStatus;
  owner: string;
  /** The caller the run was claimed with (auth on); the session is theirs. */
  caller: string | null;
  leaseExpiresAt: number;
  entries: LogEntry[];
  eventCount: number;
  /** Id of the newest event trimmed away, so readers before it are told of the gap. */
  lastTrimmedId: string | null;
  lastWriteAt: number;
  ids: EventIdGenerator;
}

/** The embedded bus: one process, no setup. Same semantics as `RedisBus`. */
export class MemoryBus implements TimelineBus {
  private readonly sessions = new Map<string, SessionLog>();
  private readonly listeners = new Map<string, Set<LiveListener>>();
  private readonly cancelHandlers = new Set<(sessionId: string) => void>();
  /** The caller each session belongs to, and when that binding lapses unless touched. */
  private readonly callers = new Map<string, { caller: string; expiresAt: number }>();
  private readonly ttlMs: number;
  private readonly maxEvents: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryBusOptions = {}) {
    this.ttlMs = (options.eventTtlS ?? 3600) * 1000;
    this.maxEvents = options.maxEventsPerSession ?? 10000;
    this.now = options.now ?? Date.now;
    const sweepMs = options.sweepIntervalMs ?? Math.min(60_000, Math.max(100, this.ttlMs / 10));
    this.sweeper = setInterval(() => this.reclaimExpired(), sweepMs);
    this.sweeper.unref();
  }

  async publish(sessionId: string, event: EventDraft, options?: PublishOptions): Promise<string> {
    const log = this.runningLog(sessionId);
    const id = log.ids.next(this.now());
    const entry: LogEntry = {
      id,
      kind: 'event',
      data: serializeEvent(id, JSON.stringify(event)),
      seq: event.seq,
      traceparent: options?.traceparent,
    };
    log.entries.push(entry);
    log.eventCount += 1;
    if (log.eventCount > this.maxEvents) {
      const trimmed = log.entries.shift() as LogEntry;
      log.lastTrimmedId = trimmed.id;
      log.eventCount -= 1;
    }
    log.lastWriteAt = this.now();
    this.fanOut(sessionId, entry);
    return id;
  }

  async signalDone(sessionId: string, done: DonePayload, options?: PublishOptions): Promise<string | null> {
    const log = this.sessions.get(sessionId);
    if (!log || log.status !== 'running') return null;
    const id = log.ids.next(this.now());
    const entry: LogEntry = {
      id,
      kind: 'done',
      data: JSON.stringify(done),
      traceparent: options?.traceparent,
    };
    log.entries.push(entry);
    log.status = done.status;
    log.lastWriteAt = this.now();
    this.fanOut(sessionId, entry);
    return id;
  }

  async read(sessionId: string, afterId: string | null, limit = Infinity): Promise<LogSlice> {
    const log = this.sessions.get(sessionId);
    if (!log) return { status: 'waiting', entries: [], gap: null, more: false };
    const start = afterId === null ? 0 : firstIndexAfter(log.entries, afterId);
    const end = Math.min(log.entries.length, start + limit);
    const entries = log.entries.slice(start, end);
    const missed = log.lastTrimmedId !== null && compareEventIds(afterId, log.lastTrimmedId) < 0;
    const gap = missed ? { after: afterId, first_available: log.entries[0]?.id ?? null } : null;
    return { status: log.status, entries, gap, more: end < log.entries.length };
  }

  async subscribe(sessionId: string, listener: LiveListener): Promise<Subscription> {
    let set = this.listeners.get(sessionId);
    if (!set) {
      set = new Set();
      this.listeners.set(sessionId, set);
    }
    set.add(listener);
    return {
      unsubscribe: () => {
        const current = this.listeners.get(sessionId);
        if (!current) return;
        current.delete(listener);
        if (current.size === 0) this.listeners.delete(sessionId);
      },
    };
  }

  async claimRun(sessionId: string, owner: string, leaseMs: number, firstEvent?: EventDraft, options: ClaimOptions = {}): Promise<boolean> {
    if (this.sessions.has(sessionId)) return false;
    const now = this.now();
    this.sessions.set(sessionId, {
      status: 'running',
      owner,
      caller: options.caller ?? null,
      leaseExpiresAt: now + leaseMs,
      entries: [],
      eventCount: 0,
      lastTrimmedId: null,
      lastWriteAt: now,
      ids: new EventIdGenerator(),
    });
    if (firstEvent !== undefined) await this.publish(sessionId, firstEvent, options);
    return true;
  }

  async renewLease(sessionId: string, owner: string, leaseMs: number): Promise<boolean> {
    const log = this.sessions.get(sessionId);
    if (!log || log.status !== 'running' || log.owner !== owner) return false;
    log.leaseExpiresAt = this.now() + leaseMs;
    return true;
  }

  async requestCancel(sessionId: string): Promise<CancelRequestOutcome> {
    const log = this.sessions.get(sessionId);
    if (!log) return 'not_found';
    if (log.status !== 'running') return 'finished';
    for (const handler of this.cancelHandlers) handler(sessionId);
    return 'cancelling';
  }

  onCancelRequest(handler: (sessionId: string) => void): () => void {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  async bindCaller(sessionId: string, caller: string): Promise<boolean> {
    const runCaller = this.sessions.get(sessionId)?.caller ?? null;
    if (runCaller !== null) return runCaller === caller;
    const now = this.now();
    const bound = this.callers.get(sessionId);
    if (bound && bound.caller !== caller && !this.bindingLapsed(sessionId, bound.expiresAt, now)) return false;
    this.callers.set(sessionId, { caller, expiresAt: now + this.ttlMs });
    return true;
  }

  async runCaller(sessionId: string): Promise<string | null> {
    return this.sessions.get(sessionId)?.caller ?? null;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.listeners.clear();
    this.cancelHandlers.clear();
  }

  /** Sessions whose log is held in memory (for tests and metrics). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Sessions with at least one live listener (for tests and metrics). */
  get subscribedSessionCount(): number {
    return this.listeners.size;
  }

  /** A binding lasts while its session's log is kept, and `ttlMs` after the last touch. */
  private bindingLapsed(sessionId: string, expiresAt: number, now: number): boolean {
    return expiresAt <= now && !this.sessions.has(sessionId);
  }

  private runningLog(sessionId: string): SessionLog {
    const log = this.sessions.get(sessionId);
    if (!log || log.status !== 'running') {
      throw new Error(`session ${sessionId} has no running run to publish to`);
    }
    return log;
  }

  private fanOut(sessionId: string, entry: LogEntry): void {
    const set = this.listeners.get(sessionId);
    if (!set) return;
    // The Set itself, not a copy per event: a listener removed meanwhile is skipped, and one
    // added meanwhile gets an entry it can only already have (readers drop what they have).
    for (const listener of set) listener.onEntry(entry);
  }

  /** Forgets finished sessions whose TTL passed, like Redis key expiry. Runs are never reclaimed. */
  private reclaimExpired(): void {
    const cutoff = this.now() - this.ttlMs;
    for (const [sessionId, log] of this.sessions) {
      if (log.status !== 'running' && log.lastWriteAt <= cutoff) this.sessions.delete(sessionId);
    }
    const now = this.now();
    for (const [sessionId, bound] of this.callers) {
      if (this.bindingLapsed(sessionId, bound.expiresAt, now)) this.callers.delete(sessionId);
    }
  }
}

function firstIndexAfter(entries: LogEntry[], afterId: string): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareEventIds(entries[mid].id, afterId) <= 0) low = mid + 1;
    else high = mid;
  }
  return low;
}
