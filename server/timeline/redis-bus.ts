import Redis, { type Cluster, type RedisOptions } from 'ioredis';
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
import type { Subscriber } from './pubsub-channels';
import { connectRedis, reconnectDelay, reconnectsWithin, type RedisTarget } from './redis-connection';
import { closeConnection, isLost, whenConnected } from './redis-lifecycle';
import { decodeLiveEntry, defineTimelineScripts, fromStreamEntry, LOG_RESTORED } from './redis-scripts';
import { RunIndex, type DueRun } from './run-index';
import { sessionKeys, type SessionKeys } from './session-keys';

export interface RedisBusOptions extends RedisTarget {
  /** Seconds a session's keys live after its last write. Defaults to `3600`. */
  eventTtlS?: number;
  /** Newest events kept per session; older ones are trimmed. Defaults to `10000`. */
  maxEventsPerSession?: number;
  /** Prefix of every key and channel, so several deployments can share one Redis. Defaults to `timeline:`. */
  keyPrefix?: string;
  /**
   * How long a command waits for an unreachable Redis (or a cluster shard failing over) before
   * it fails (a run's publishes, queued meanwhile, then fail with `bus_unavailable`). Defaults to `30000`.
   */
  outageMs?: number;
  /** How long `ping` waits for Redis. Defaults to `2000`. */
  pingTimeoutMs?: number;
  /**
   * The run lease of the deployment (`RUN_LEASE_MS`). Every instance sweeps for expired leases
   * every quarter to half of it, and ends a dead owner's run as `run_lost`. Defaults to `10000`.
   */
  runLeaseMs?: number;
  /** Keys the index of running runs is spread over (`RUN_INDEX_BUCKETS`); the same on every instance. Defaults to `16`. */
  runIndexBuckets?: number;
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

export { reconnectDelay, reconnectsWithin };

interface OwnedRun {
  owner: string;
  /** Whose session it is (`''`: nobody's); restored with the keys if Redis loses them. */
  caller: string;
  leaseMs: number;
  /** Id and seq of the newest event Redis acknowledged. */
  lastId: string | null;
  lastSeq: number;
  /** Stops listening for cancel requests of the run. */
  stopControl: () => void;
}

/** Expired runs one sweep call ends at most per bucket; a full batch is followed by another at once. */
const SWEEP_BATCH = 100;

/**
 * The bus for real deployments: any instance serves any session. Each session's log is a
 * Redis Stream (so its ids are the event ids), each write is one Lua script that appends and
 * publishes atomically, and all streams of an instance share one subscriber. On one server or
 * a Sentinel-managed master: two connections per instance, commands and the subscriber. On a
 * Redis Cluster: a cluster client, and a subscriber connection per shard with subscribed
 * sessions (sharded pub/sub).
 */
export class RedisBus implements TimelineBus {
  private readonly commands: Redis | Cluster;
  private readonly subscriber: Subscriber;
  private readonly index: RunIndex;
  /** On a cluster, the run index and a session live on different nodes: no ordering between them. */
  private readonly clustered: boolean;
  private readonly ttlS: number;
  private readonly maxEvents: number;
  private readonly prefix: string;
  private readonly pingTimeoutMs: number;
  private readonly leaseMs: number;
  private readonly log: Logger;
  private readonly check: () => Promise<void>;
  private readonly cancelHandlers = new Set<(sessionId: string) => void>();
  /**
   * Runs this instance claimed and has not finished, by owner: if Redis loses their keys or
   * their newest events (a restart without persistence, a failover), the owner re-creates what
   * was lost instead of failing the run.
   */
  private readonly owned = new Map<string, OwnedRun>();
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
    this.leaseMs = options.runLeaseMs ?? 10000;
    this.maxPendingWriteBytes = options.maxPendingWriteBytes ?? 32 * 1024 * 1024;
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'redis-bus' });
    const outageMs = options.outageMs ?? 30000;
    const connections = connectRedis(options, {
      name: this.prefix,
      base: {
        retryStrategy: reconnectDelay,
        maxRetriesPerRequest: reconnectsWithin(outageMs),
        // A socket still connecting when the bus closes is destroyed after this, not ioredis's 2 s.
        disconnectTimeout: 200,
        ...options.redis,
      },
      outageMs,
      log: this.log,
    });
    this.commands = connections.commands;
    this.subscriber = connections.subscriber;
    this.check = connections.check;
    this.clustered = connections.publishCommand === 'SPUBLISH';
    this.watchConnection(this.commands, 'commands');
    defineTimelineScripts(this.commands, connections.publishCommand);
    this.index = new RunIndex(this.commands, this.prefix, options.runIndexBuckets ?? 16);
    this.sweeper = new LeaseSweeper({ leaseMs: this.leaseMs, sweep: () => this.sweep(), log: this.log });
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
    if (reply === 0 || reply === -3) throw new RunLostError(`session ${sessionId} was ended while its run was going (lease lost)`);
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
        this.commands.timelineSignalDone(keys.meta, keys.log, keys.lease, keys.live, doneJson, done.status, this.ttlS, this.owned.get(sessionId)?.lastSeq ?? 0),
      );
    } catch (error) {
      if (error instanceof BusUnavailableError && this.owned.has(sessionId)) this.unwrittenDone.set(sessionId, done);
      throw error;
    }
    this.forget(sessionId);
    if (typeof reply !== 'string') return null;
    // A left-over entry is harmless: a sweep finds the session finished and drops it.
    await this.index.remove(sessionId).catch((error: unknown) => this.log.debug({ err: error, session_id: sessionId }, 'could not drop a finished run from the index'));
    return reply;
  }

  async read(sessionId: string, afterId: string | null, limit?: number): Promise<LogSlice> {
    const keys = this.keys(sessionId);
    const [status, trimmed, lost, first, raw, more] = await this.call(() =>
      this.commands.timelineRead(keys.meta, keys.log, afterId ?? '', limit ?? 0),
    );
    const entries = raw.map(fromStreamEntry);
    // Events are gone if the cap trimmed them, or if Redis lost them and the owner had to
    // restore the session: a reader that had not seen the newest of them must be told.
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
    this.refuseWhileLost('subscriber');
    const remove = await this.call(() =>
      this.subscriber.listen(this.keys(sessionId).live, decodeLiveEntry, {
        onMessage: (entry) => (entry === LOG_RESTORED ? listener.onResync?.() : listener.onEntry(entry)),
        onResync: () => listener.onResync?.(),
      }),
    );
    return { unsubscribe: remove };
  }

  /**
   * The run goes into the index first, so the index is never without a running run; then the
   * claim. The owner also listens on the session's control channel for cancel requests (a
   * lost one is caught at the next renewal by the cancel mark).
   */
  async claimRun(sessionId: string, owner: string, leaseMs: number, firstEvent?: EventDraft, options: ClaimOptions = {}): Promise<boolean> {
    this.refuseWhileLost('commands');
    const keys = this.keys(sessionId);
    const firstJson = firstEvent === undefined ? '' : JSON.stringify(firstEvent);
    const caller = options.caller ?? '';
    const control = this.listenForCancel(sessionId);
    let reply: string | number;
    try {
      const indexed = this.call(() => this.index.add(sessionId, leaseMs, { onlyNew: true }));
      // One connection runs commands in order; on a cluster the bucket is on another node.
      if (this.clustered) await indexed;
      const claimed = this.call(() =>
        this.commands.timelineClaim(keys.meta, keys.lease, keys.log, keys.live, owner, leaseMs, this.ttlS, firstJson, this.maxEvents, caller),
      );
      [, reply] = await Promise.all([indexed, claimed]);
    } catch (error) {
      void control.then((stop) => stop());
      throw error;
    }
    const stopControl = await control;
    if (reply === 0) {
      stopControl();
      return false;
    }
    const first = typeof reply === 'string' ? reply : null;
    this.owned.set(sessionId, { owner, caller, leaseMs, lastId: first, lastSeq: first === null ? 0 : 1, stopControl });
    return true;
  }

  async renewLease(sessionId: string, owner: string, leaseMs: number): Promise<boolean> {
    const keys = this.keys(sessionId);
    const reply = await this.call(() => this.commands.timelineRenew(keys.meta, keys.lease, keys.log, owner, leaseMs, this.ttlS));
    if (reply === -1) return this.restoreOwnedRun(sessionId);
    if (reply === 0) {
      this.forget(sessionId);
      return false;
    }
    // The index entry follows the lease; if this fails the entry is due early, and a sweep
    // that finds the lease alive leaves it.
    await this.call(() => this.index.add(sessionId, leaseMs)).catch((error: unknown) =>
      this.log.debug({ err: error, session_id: sessionId }, 'could not move a renewed run in the index'),
    );
    if (reply === 2) this.cancelRequested(sessionId);
    return true;
  }

  async requestCancel(sessionId: string): Promise<CancelRequestOutcome> {
    this.refuseWhileLost('commands');
    const keys = this.keys(sessionId);
    const outcome = await this.call(() => this.commands.timelineCancel(keys.meta, keys.control));
    return outcome as CancelRequestOutcome;
  }

  onCancelRequest(handler: (sessionId: string) => void): () => void {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  async bindCaller(sessionId: string, caller: string): Promise<boolean> {
    this.refuseWhileLost('commands');
    const keys = this.keys(sessionId);
    const bound = await this.call(() => this.commands.timelineBindCaller(keys.caller, keys.meta, caller, this.ttlS));
    return bound === 1;
  }

  async runCaller(sessionId: string): Promise<string | null> {
    this.refuseWhileLost('commands');
    return this.call(() => this.commands.hget(this.keys(sessionId).meta, 'caller'));
  }

  /** Readiness: one server answers PING; a Sentinel-named server is a master; a cluster's state is ok. */
  async ping(): Promise<void> {
    this.refuseWhileLost('commands', 'subscriber');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new BusUnavailableError('Redis did not answer in time')), this.pingTimeoutMs);
    });
    try {
      await Promise.race([this.call(this.check), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.sweeper.stop();
    this.cancelHandlers.clear();
    for (const sessionId of [...this.owned.keys()]) this.forget(sessionId);
    this.unwrittenDone.clear();
    await Promise.all([closeConnection(this.commands), this.subscriber.close()]);
  }

  /** Sessions this instance is subscribed to for their live entries (for tests and metrics). */
  get subscribedSessionCount(): number {
    return this.liveChannels().length;
  }

  /** Live listeners over all sessions (for tests and metrics). */
  get listenerCount(): number {
    return this.liveChannels().reduce((sum, name) => sum + this.subscriber.listenersOf(name), 0);
  }

  /** Resolves once the connections are up (start-up, tests). */
  async whenListening(): Promise<void> {
    await Promise.all([whenConnected(this.commands), this.subscriber.whenReady()]);
  }

  /**
   * Ends the runs whose owner stopped renewing its lease (it died, or lost Redis for longer
   * than the lease) with `WORKFLOW_ERROR` and `done` `failed` / `run_lost`, each once whichever
   * instances sweep: every bucket of the index, in parallel. Resolves with the sessions this
   * call ended. Skipped while Redis is away: a sweep is never queued behind an outage.
   */
  async sweepExpiredRuns(): Promise<string[]> {
    const ended = await Promise.all(this.index.keys.map((bucket) => this.sweepBucket(bucket)));
    return ended.flat();
  }

  private async sweepBucket(bucket: string): Promise<string[]> {
    const ended: string[] = [];
    for (;;) {
      if (this.commands.status !== 'ready') return ended;
      const due = await this.call(() => this.index.due(bucket, SWEEP_BATCH));
      const outcomes = await Promise.all(due.map((run) => this.endLostRun(run)));
      ended.push(...due.filter((_run, i) => outcomes[i]).map((run) => run.sessionId));
      if (due.length < SWEEP_BATCH) return ended;
    }
  }

  /**
   * Ends one run whose lease expired, unless it finished or was renewed meanwhile (see
   * END_LOST_RUN); drops its index entry once the session says it finished or is gone.
   */
  private async endLostRun({ sessionId, due }: DueRun): Promise<boolean> {
    const keys = this.keys(sessionId);
    const { stepJson, doneJson } = runLostEnding(new Date());
    const reply = await this.call(() =>
      this.commands.timelineEndLostRun(
        keys.meta,
        keys.log,
        keys.lease,
        keys.live,
        JSON.stringify(sessionId),
        stepJson,
        doneJson,
        this.ttlS,
        this.maxEvents,
        // A lease seen missing ends the run a quarter lease later at the earliest: the next sweep.
        Math.floor(this.leaseMs / 4),
      ),
    );
    if (reply === 2 || reply === 3) return false;
    await this.call(() => this.index.drop(sessionId, due));
    if (typeof reply !== 'string') return false;
    this.log.warn({ session_id: sessionId, done_id: reply }, 'run lease expired; ended the run as run_lost');
    return true;
  }

  /**
   * Runs a write whose payload waits in memory until Redis answers; refuses it at once when
   * too much is already waiting (Redis away), so an outage costs bounded memory. A write that
   * finds the session gone (-1), or its newest events lost (-3), runs again once an owned
   * run's keys are restored.
   */
  private async write<T>(sessionId: string, size: number, operation: () => Promise<T | -1 | -3>): Promise<T | -1 | -3> {
    if (this.pendingWriteBytes + size > this.maxPendingWriteBytes) {
      throw new BusUnavailableError(`more than ${this.maxPendingWriteBytes} characters of writes are waiting for Redis`);
    }
    this.pendingWriteBytes += size;
    try {
      const reply = await this.call(operation);
      return (reply === -1 || reply === -3) && (await this.restoreOwnedRun(sessionId)) ? await this.call(operation) : reply;
    } finally {
      this.pendingWriteBytes -= size;
    }
  }

  /**
   * Publishes of many runs are issued in the same tick (their previous replies arrive in one
   * read): corking the socket until the tick ends sends them in one write instead of one
   * syscall each. (ioredis's `enableAutoPipelining` would batch them too, but it resends each
   * script's full source with every batch.) A cluster client writes to a socket per node.
   */
  private coalesceWrites(): void {
    if (!(this.commands instanceof Redis)) return;
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
    return sessionKeys(this.prefix, sessionId);
  }

  private liveChannels(): string[] {
    return [...this.subscriber.channelNames()].filter((name) => name.endsWith(':live'));
  }

  /** Resolves with the function that stops listening (a no-op if the subscribe failed). */
  private async listenForCancel(sessionId: string): Promise<() => void> {
    try {
      return await this.subscriber.listen(this.keys(sessionId).control, () => sessionId, {
        onMessage: () => this.cancelRequested(sessionId),
        // A lost cancel message is not lost for good: the owner sees the mark at its next renewal.
        onResync: () => undefined,
      });
    } catch (error) {
      this.log.warn({ err: error, session_id: sessionId }, 'could not listen for cancel requests; the lease renewal will see them');
      return () => undefined;
    }
  }

  /** The run is no longer this instance's: stop listening for its cancel requests. */
  private forget(sessionId: string): void {
    const run = this.owned.get(sessionId);
    if (!run) return;
    this.owned.delete(sessionId);
    run.stopControl();
  }

  private cancelRequested(sessionId: string): void {
    for (const handler of [...this.cancelHandlers]) handler(sessionId);
  }

  /**
   * Redis lost the keys or the newest events of a run this instance owns (a restart without
   * persistence, a failover to a replica that had not received them): put the run back in the
   * index, then restore the session, marked with the last id it had acknowledged, so a reader
   * that had not seen that event hears of the gap, and new ids still follow it.
   */
  private async restoreOwnedRun(sessionId: string): Promise<boolean> {
    const run = this.owned.get(sessionId);
    if (run === undefined) return false;
    const keys = this.keys(sessionId);
    await this.call(() => this.index.add(sessionId, run.leaseMs));
    const restored = await this.call(() =>
      this.commands.timelineRestore(keys.meta, keys.lease, keys.log, keys.live, run.owner, run.leaseMs, this.ttlS, run.lastId ?? '', run.lastSeq, run.caller),
    );
    if (restored !== 1) return false;
    this.log.warn({ session_id: sessionId, lost_after: run.lastId }, 'Redis lost events of a running session; its log goes on from here');
    return true;
  }

  /**
   * New work (a stream, a run, a cancel) is refused at once while a connection is lost, so
   * its caller gets `503 bus_unavailable` instead of waiting for the reconnect. A run already
   * going keeps publishing: its writes wait in ioredis's queue until Redis is back.
   */
  private refuseWhileLost(...needs: Array<'commands' | 'subscriber'>): void {
    if (needs.includes('commands') && isLost(this.commands)) {
      throw new BusUnavailableError(`Redis commands connection is ${this.commands.status}`);
    }
    if (needs.includes('subscriber') && !this.subscriber.available) throw new BusUnavailableError('Redis subscriber connection is lost');
  }

  /** Runs a Redis call; a connection failure becomes `BusUnavailableError`. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw asBusError(error);
    }
  }

  private watchConnection(connection: Redis | Cluster, name: string): void {
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
  if (error instanceof BusUnavailableError) return error;
  return isConnectionError(error) ? new BusUnavailableError('Redis is unreachable', { cause: error }) : error;
}
