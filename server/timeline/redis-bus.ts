import Redis, { type RedisOptions } from 'ioredis';
import pino, { type Logger } from 'pino';
import type { DonePayload, SessionStatus } from '../../client-sdk/src/types';
import type {
  CancelRequestOutcome,
  ClaimOptions,
  EventDraft,
  LiveListener,
  LogSlice,
  Subscription,
  TimelineBus,
} from './bus';
import { BusUnavailableError, RunLostError } from './bus';
import { compareEventIds } from './event-id';
import { LeaseSweeper, runLostEnding } from './lease-sweeper';
import { decodeLiveEntry, defineTimelineScripts, fromStreamEntry, LOG_RESTORED } from './redis-scripts';
import { RedisSubscriber } from './redis-subscriber';

export interface RedisBusOptions {
  /** `redis://[:password@]host:port[/db]`. */
  url: string;
  /** Seconds a session's keys live after its last write. Defaults to `3600`. */
  eventTtlS?: number;
  /** Newest events kept per session; older ones are trimmed. Defaults to `10000`. */
  maxEventsPerSession?: number;
  /** Prefix of every key and channel, so several deployments can share one Redis. Defaults to `timeline:`. */
  keyPrefix?: string;
  /**
   * How long a command waits for an unreachable Redis before it fails (a run's publishes,
   * queued meanwhile, then fail with `bus_unavailable`). Defaults to `30000`.
   */
  outageMs?: number;
  /** How long `ping` waits for Redis. Defaults to `2000`. */
  pingTimeoutMs?: number;
  /**
   * The run lease of the deployment (`RUN_LEASE_MS`). Every instance sweeps for expired leases
   * every quarter to half of it, and ends a dead owner's run as `run_lost`. Defaults to `10000`.
   */
  runLeaseMs?: number;
  /**
   * Characters of event and `done` JSON (bytes, for ASCII) that may wait for Redis at once on
   * this instance (writes queued while Redis is away); beyond it a write fails at once with
   * `bus_unavailable` instead of memory growing for the whole outage. Defaults to `33554432`.
   */
  maxPendingWriteBytes?: number;
  log?: Logger;
  /** Extra ioredis options (tests shorten the reconnect delay). */
  redis?: Partial<RedisOptions>;
}

interface SessionKeys {
  meta: string;
  log: string;
  lease: string;
  live: string;
  caller: string;
}

interface OwnedRun {
  owner: string;
  /** Whose session it is (`''`: nobody's); restored with the keys if Redis loses them. */
  caller: string;
  leaseMs: number;
  /** Id and seq of the newest event Redis acknowledged. */
  lastId: string | null;
  lastSeq: number;
}

/** Expired runs one sweep call ends at most; a full batch is followed by another at once. */
const SWEEP_BATCH = 100;

/** Wait before reconnect attempt `attempt` (1-based): 50 ms more each time, at most 1 s. */
export function reconnectDelay(attempt: number): number {
  return Math.min(attempt * 50, 1000);
}

/**
 * ioredis fails a queued command after a number of reconnect attempts, not after a time:
 * the number of attempts whose delays add up to `ms`.
 */
export function reconnectsWithin(ms: number): number {
  let attempts = 0;
  for (let waited = 0; waited < ms; ) waited += reconnectDelay(++attempts);
  return attempts;
}

/**
 * The bus for real deployments: any instance serves any session. Each session's log is a
 * Redis Stream (so its ids are the event ids), each write is one Lua script that appends and
 * publishes atomically, and all streams of an instance share one pub/sub connection.
 * Two connections per instance in all: commands, and the shared subscriber.
 */
export class RedisBus implements TimelineBus {
  private readonly commands: Redis;
  private readonly subscriberConnection: Redis;
  private readonly subscriber: RedisSubscriber;
  private readonly ttlS: number;
  private readonly maxEvents: number;
  private readonly prefix: string;
  private readonly pingTimeoutMs: number;
  private readonly log: Logger;
  private readonly cancelHandlers = new Set<(sessionId: string) => void>();
  /**
   * Runs this instance claimed and has not finished, by owner: if Redis loses their keys (a
   * restart without persistence), the owner re-creates them instead of failing the run.
   */
  private readonly owned = new Map<string, OwnedRun>();
  private readonly controlReady: Promise<() => void>;
  private readonly sweeper: LeaseSweeper;
  private readonly maxPendingWriteBytes: number;
  private pendingWriteBytes = 0;
  /**
   * `done`s of runs of this instance that could not be written (Redis stayed away longer than
   * the outage limit): written when Redis is back, unless a run-lost sweep got there first.
   */
  private readonly unwrittenDone = new Map<string, DonePayload>();

  constructor(options: RedisBusOptions) {
    this.ttlS = options.eventTtlS ?? 3600;
    this.maxEvents = options.maxEventsPerSession ?? 10000;
    this.prefix = options.keyPrefix ?? 'timeline:';
    this.pingTimeoutMs = options.pingTimeoutMs ?? 2000;
    this.maxPendingWriteBytes = options.maxPendingWriteBytes ?? 32 * 1024 * 1024;
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'redis-bus' });
    const base: RedisOptions = {
      retryStrategy: reconnectDelay,
      maxRetriesPerRequest: reconnectsWithin(options.outageMs ?? 30000),
      // A socket still connecting when the bus closes is destroyed after this, not ioredis's 2 s.
      disconnectTimeout: 200,
      ...options.redis,
    };
    this.commands = new Redis(options.url, { ...base, connectionName: `${this.prefix}commands` });
    // Resubscribing is the subscriber's job: it must know when it is done, to resync readers.
    this.subscriberConnection = new Redis(options.url, {
      ...base,
      connectionName: `${this.prefix}subscriber`,
      autoResubscribe: false,
    });
    this.watchConnection(this.commands, 'commands');
    this.watchConnection(this.subscriberConnection, 'subscriber');
    defineTimelineScripts(this.commands);
    this.subscriber = new RedisSubscriber(this.subscriberConnection, this.log);
    this.controlReady = this.subscriber.listen(this.controlChannel, (sessionId) => sessionId, {
      onMessage: (sessionId) => this.cancelRequested(sessionId),
      // A lost cancel message is not lost for good: the owner sees the mark at its next renewal.
      onResync: () => undefined,
    });
    this.controlReady.catch((error: unknown) => this.log.warn({ err: error }, 'could not subscribe to the control channel'));
    this.sweeper = new LeaseSweeper({ leaseMs: options.runLeaseMs ?? 10000, sweep: () => this.sweep(), log: this.log });
    this.sweeper.start();
  }

  async publish(sessionId: string, event: EventDraft): Promise<string> {
    const keys = this.keys(sessionId);
    const draftJson = JSON.stringify(event);
    const reply = await this.write(sessionId, draftJson.length, () => {
      this.coalesceWrites();
      return this.commands.timelinePublish(keys.meta, keys.log, keys.live, draftJson, this.maxEvents, this.ttlS, event.seq);
    });
    if (reply === -2) throw new Error(`session ${sessionId}: seq ${event.seq} was already published`);
    if (reply === 0) throw new RunLostError(`session ${sessionId} was ended while its run was going (lease lost)`);
    if (typeof reply !== 'string') throw new Error(`session ${sessionId} has no running run to publish to`);
    const owned = this.owned.get(sessionId);
    if (owned) {
      owned.lastId = reply;
      owned.lastSeq = event.seq;
    }
    return reply;
  }

  async signalDone(sessionId: string, done: DonePayload): Promise<string | null> {
    const keys = this.keys(sessionId);
    const doneJson = JSON.stringify(done);
    let reply: string | number;
    try {
      reply = await this.write(sessionId, doneJson.length, () =>
        this.commands.timelineSignalDone(keys.meta, keys.log, keys.lease, this.runningKey, keys.live, doneJson, done.status, this.ttlS, sessionId),
      );
    } catch (error) {
      if (error instanceof BusUnavailableError && this.owned.has(sessionId)) this.unwrittenDone.set(sessionId, done);
      throw error;
    }
    this.owned.delete(sessionId);
    return typeof reply === 'string' ? reply : null;
  }

  async read(sessionId: string, afterId: string | null, limit?: number): Promise<LogSlice> {
    const keys = this.keys(sessionId);
    const range = afterId === null ? '-' : `(${afterId}`;
    const [status, trimmed, lost, first, raw, more] = await this.call(() =>
      this.commands.timelineRead(keys.meta, keys.log, range, limit ?? 0),
    );
    const entries = raw.map(fromStreamEntry);
    // Events are gone if the cap trimmed them, or if Redis lost the log and the owner had to
    // start it again: a reader that had not seen the newest of them must be told.
    const missed =
      (trimmed !== null && compareEventIds(afterId, trimmed) < 0) ||
      (lost !== null && compareEventIds(afterId, lost) < 0);
    return {
      status: (status as SessionStatus | null) ?? 'waiting',
      entries,
      gap: missed ? { after: afterId, first_available: first } : null,
      more: more === 1,
    };
  }

  async subscribe(sessionId: string, listener: LiveListener): Promise<Subscription> {
    this.refuseWhileLost(this.subscriberConnection, 'subscriber');
    const remove = await this.call(() =>
      this.subscriber.listen(this.keys(sessionId).live, decodeLiveEntry, {
        onMessage: (entry) => (entry === LOG_RESTORED ? listener.onResync?.() : listener.onEntry(entry)),
        onResync: () => listener.onResync?.(),
      }),
    );
    return { unsubscribe: remove };
  }

  async claimRun(sessionId: string, owner: string, leaseMs: number, firstEvent?: EventDraft, options: ClaimOptions = {}): Promise<boolean> {
    this.refuseWhileLost(this.commands, 'commands');
    const firstJson = firstEvent === undefined ? '' : JSON.stringify(firstEvent);
    const run: OwnedRun = { owner, caller: options.caller ?? '', leaseMs, lastId: null, lastSeq: 0 };
    const reply = await this.claim(sessionId, run, firstJson);
    if (reply === 0) return false;
    const first = typeof reply === 'string' ? reply : null;
    this.owned.set(sessionId, { ...run, lastId: first, lastSeq: first === null ? 0 : 1 });
    return true;
  }

  async renewLease(sessionId: string, owner: string, leaseMs: number): Promise<boolean> {
    const keys = this.keys(sessionId);
    const reply = await this.call(() =>
      this.commands.timelineRenew(keys.meta, keys.lease, keys.log, this.runningKey, owner, leaseMs, this.ttlS, sessionId),
    );
    if (reply === -1) return this.restoreOwnedRun(sessionId);
    if (reply === 0) {
      this.owned.delete(sessionId);
      return false;
    }
    if (reply === 2) this.cancelRequested(sessionId);
    return true;
  }

  async requestCancel(sessionId: string): Promise<CancelRequestOutcome> {
    this.refuseWhileLost(this.commands, 'commands');
    const outcome = await this.call(() =>
      this.commands.timelineCancel(this.keys(sessionId).meta, this.controlChannel, sessionId),
    );
    return outcome as CancelRequestOutcome;
  }

  onCancelRequest(handler: (sessionId: string) => void): () => void {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  async bindCaller(sessionId: string, caller: string): Promise<boolean> {
    this.refuseWhileLost(this.commands, 'commands');
    const keys = this.keys(sessionId);
    const bound = await this.call(() => this.commands.timelineBindCaller(keys.caller, keys.meta, caller, this.ttlS));
    return bound === 1;
  }

  async runCaller(sessionId: string): Promise<string | null> {
    this.refuseWhileLost(this.commands, 'commands');
    return this.call(() => this.commands.hget(this.keys(sessionId).meta, 'caller'));
  }

  async ping(): Promise<void> {
    this.refuseWhileLost(this.commands, 'commands');
    this.refuseWhileLost(this.subscriberConnection, 'subscriber');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new BusUnavailableError('Redis did not answer PING in time')), this.pingTimeoutMs);
    });
    try {
      await Promise.race([this.call(() => this.commands.ping()), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.sweeper.stop();
    this.cancelHandlers.clear();
    this.owned.clear();
    this.unwrittenDone.clear();
    await Promise.all([quit(this.commands), quit(this.subscriberConnection)]);
  }

  /** Channels this instance is subscribed to for sessions (for tests and metrics). */
  get subscribedSessionCount(): number {
    return this.subscriber.channelCount - (this.subscriber.listenersOf(this.controlChannel) > 0 ? 1 : 0);
  }

  /** Live listeners over all sessions (for tests and metrics). */
  get listenerCount(): number {
    return this.subscriber.listenerCount - this.subscriber.listenersOf(this.controlChannel);
  }

  /** Resolves once this instance receives cancel requests (startup, tests). */
  async whenListening(): Promise<void> {
    await this.controlReady;
  }

  /**
   * Ends the runs whose owner stopped renewing its lease (it died, or lost Redis for longer
   * than the lease) with `WORKFLOW_ERROR` and `done` `failed` / `run_lost`, each once whichever
   * instances sweep. Resolves with the sessions this call ended. Skipped while Redis is away:
   * a sweep is never queued behind an outage.
   */
  async sweepExpiredRuns(): Promise<string[]> {
    const ended: string[] = [];
    for (;;) {
      if (this.commands.status !== 'ready') return ended;
      const expired = await this.call(() => this.commands.timelineExpiredRuns(this.runningKey, SWEEP_BATCH));
      for (const sessionId of expired) {
        if (await this.endLostRun(sessionId)) ended.push(sessionId);
      }
      if (expired.length < SWEEP_BATCH) return ended;
    }
  }

  private get controlChannel(): string {
    return `${this.prefix}control`;
  }

  /** The deployment's running sessions, scored by lease expiry (see redis-scripts.ts). */
  private get runningKey(): string {
    return `${this.prefix}running`;
  }

  /** Ends one run whose lease expired, unless it finished or was renewed meanwhile. */
  private async endLostRun(sessionId: string): Promise<boolean> {
    const keys = this.keys(sessionId);
    const { stepJson, doneJson } = runLostEnding(new Date());
    const reply = await this.call(() =>
      this.commands.timelineEndLostRun(
        keys.meta,
        keys.log,
        keys.lease,
        this.runningKey,
        keys.live,
        sessionId,
        JSON.stringify(sessionId),
        stepJson,
        doneJson,
        this.ttlS,
        this.maxEvents,
      ),
    );
    if (typeof reply !== 'string') return false;
    this.log.warn({ session_id: sessionId, done_id: reply }, 'run lease expired; ended the run as run_lost');
    return true;
  }

  /**
   * Runs a write whose payload waits in memory until Redis answers; refuses it at once when
   * too much is already waiting (Redis away), so an outage costs bounded memory. A write that
   * finds the session gone (-1) runs again once an owned run's keys are restored.
   */
  private async write<T>(sessionId: string, size: number, operation: () => Promise<T | -1>): Promise<T | -1> {
    if (this.pendingWriteBytes + size > this.maxPendingWriteBytes) {
      throw new BusUnavailableError(`more than ${this.maxPendingWriteBytes} characters of writes are waiting for Redis`);
    }
    this.pendingWriteBytes += size;
    try {
      const reply = await this.call(operation);
      return reply === -1 && (await this.restoreOwnedRun(sessionId)) ? await this.call(operation) : reply;
    } finally {
      this.pendingWriteBytes -= size;
    }
  }

  /**
   * Publishes of many runs are issued in the same tick (their previous replies arrive in one
   * read): corking the socket until the tick ends sends them in one write instead of one
   * syscall each. (ioredis's `enableAutoPipelining` would batch them too, but it resends each
   * script's full source with every batch.)
   */
  private coalesceWrites(): void {
    const socket = this.commands.stream;
    if (this.commands.status !== 'ready' || socket.writableCorked > 0) return;
    socket.cork();
    process.nextTick(() => socket.uncork());
  }

  /** The periodic sweep: first this instance's held-back `done`s, then other owners' lost runs. */
  private async sweep(): Promise<string[]> {
    if (this.commands.status !== 'ready') return [];
    await this.writeUnwrittenDone();
    return this.sweepExpiredRuns();
  }

  /** Redis is back: writes the `done`s that an outage kept from being written. */
  private async writeUnwrittenDone(): Promise<void> {
    for (const [sessionId, done] of [...this.unwrittenDone]) {
      this.unwrittenDone.delete(sessionId);
      try {
        const id = await this.signalDone(sessionId, done);
        this.log.info({ session_id: sessionId, done_id: id }, 'wrote the done an outage had held back');
      } catch (error) {
        // Still away: signalDone kept it for the next sweep.
        this.log.debug({ err: error, session_id: sessionId }, 'could not write a held-back done yet');
      }
    }
  }

  private keys(sessionId: string): SessionKeys {
    const base = `${this.prefix}{${sessionId}}`;
    return {
      meta: `${base}:meta`,
      log: `${base}:log`,
      lease: `${base}:lease`,
      live: `${base}:live`,
      caller: `${base}:caller`,
    };
  }

  private cancelRequested(sessionId: string): void {
    for (const handler of [...this.cancelHandlers]) handler(sessionId);
  }

  /**
   * Redis lost the keys of a run this instance owns (restarted without persistence):
   * re-create them, marked with the last id it had acknowledged, so a reader that had not
   * seen that event hears of the gap, and new ids still follow it.
   */
  private async restoreOwnedRun(sessionId: string): Promise<boolean> {
    const run = this.owned.get(sessionId);
    if (run === undefined) return false;
    await this.claim(sessionId, run, '');
    this.log.warn({ session_id: sessionId }, 'Redis lost a running session; its log starts again from here');
    return true;
  }

  /**
   * Claims the session for `run.owner`; with `run.lastId`, re-creates the keys Redis lost after
   * that event (see CLAIM in redis-scripts.ts). `firstJson` (or `''`) is seq 1's draft.
   */
  private claim(sessionId: string, run: OwnedRun, firstJson: string): Promise<string | number> {
    const keys = this.keys(sessionId);
    return this.call(() =>
      this.commands.timelineClaim(
        keys.meta,
        keys.lease,
        keys.log,
        this.runningKey,
        run.owner,
        run.leaseMs,
        this.ttlS,
        run.lastId ?? '',
        sessionId,
        run.lastSeq,
        keys.live,
        firstJson,
        this.maxEvents,
        run.caller,
      ),
    );
  }

  /**
   * New work (a stream, a run, a cancel) is refused at once while a connection is lost, so
   * its caller gets `503 bus_unavailable` instead of waiting for the reconnect. A run already
   * going keeps publishing: its writes wait in ioredis's queue until Redis is back.
   */
  private refuseWhileLost(connection: Redis, name: string): void {
    if (connection.status === 'reconnecting' || connection.status === 'close' || connection.status === 'end') {
      throw new BusUnavailableError(`Redis ${name} connection is ${connection.status}`);
    }
  }

  /** Runs a Redis call; a connection failure becomes `BusUnavailableError`. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw asBusError(error);
    }
  }

  private watchConnection(connection: Redis, name: string): void {
    let down = false;
    connection.on('error', (error: Error) => this.log.debug({ err: error, connection: name }, 'redis connection error'));
    connection.on('close', () => {
      if (!down) this.log.warn({ connection: name }, 'redis connection lost; reconnecting');
      down = true;
    });
    connection.on('ready', () => {
      if (down) this.log.info({ connection: name }, 'redis connection restored');
      down = false;
    });
  }
}

/** ioredis rejects with plain errors when the connection is gone; Redis replies are `ReplyError`s. */
function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name !== 'ReplyError';
}

/** A connection failure becomes `BusUnavailableError`; anything else is left as it is. */
function asBusError(error: unknown): unknown {
  return isConnectionError(error) ? new BusUnavailableError('Redis is unreachable', { cause: error }) : error;
}

async function quit(connection: Redis): Promise<void> {
  if (connection.status !== 'ready') {
    // Not connected: a QUIT would wait in the offline queue; stop reconnecting instead.
    connection.disconnect();
    return;
  }
  try {
    await connection.quit();
  } catch {
    // The connection dropped meanwhile: nothing left to release but the socket.
    connection.disconnect();
  }
}
