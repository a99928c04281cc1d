import calculateSlot from 'cluster-key-slot';
import Redis, { type Cluster, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ChannelTable, type Channel, type ChannelListener, type Decode, type Subscriber } from './pubsub-channels';
import { closeConnection, isLost, whenConnected } from './redis-lifecycle';

interface ShardChannel extends Channel {
  name: string;
  slot: number;
  /** The master (`host:port`) it is subscribed on or being subscribed on; `null`: to be placed. */
  node: string | null;
  /** Bumped at each placement and at release, so the answer to an older SSUBSCRIBE is ignored. */
  attempt: number;
}

interface Link {
  redis: Redis;
  connectedOnce: boolean;
  /** Closed on purpose (no channel left on it): its `close` is not a loss. */
  retired: boolean;
}

/** How long a repair waits after a failure, and between checks while a shard is unreachable. */
const REPAIR_DELAY_MS = 100;
const UNREACHABLE_RECHECK_MS = 500;

/**
 * Sharded pub/sub on a Redis Cluster (SSUBSCRIBE, Redis 7+): a session's channels hash to its
 * slot, so its messages stay on the shard that serves it instead of crossing every node. One
 * connection per master that serves a subscribed channel, shared by every stream, with
 * ref-counted channels, like `RedisSubscriber` on a single server.
 *
 * Each channel lives on the master of its slot as the cluster client's slot map names it. It
 * moves when that changes: after a failover (the link to the dead master drops; the slot map
 * is refreshed until the promoted replica serves the slot), a slot migration (Redis sends an
 * unsolicited SUNSUBSCRIBE, or answers MOVED), or a reconnect. A channel that may have missed
 * messages on the way is stale; its listeners resync once the new SSUBSCRIBE is acknowledged
 * (or earlier, when a message arrives first), as after a reconnect on a single server.
 *
 * ioredis's own `shardedSubscribers` option was not used: it resubscribes after a failover
 * without saying when the new SSUBSCRIBE is acknowledged, and readers must re-read exactly then.
 */
export class ShardedSubscriber implements Subscriber {
  private readonly channels: ChannelTable<ShardChannel>;
  private readonly links = new Map<string, Link>();
  /** Channels placed on each node: a link with none left is closed. */
  private readonly placed = new Map<string, number>();
  private readonly onRefresh = () => this.reconcile();
  private repairTimer: NodeJS.Timeout | null = null;
  private closed = false;

  /**
   * `cluster` is the instance's command client: its slot map says which master serves a slot.
   * `linkOptions` are the options of the connections to the masters (credentials, name, retry).
   */
  constructor(
    private readonly cluster: Cluster,
    private readonly linkOptions: RedisOptions,
    private readonly log: Logger,
  ) {
    this.channels = new ChannelTable(log);
    cluster.on('refresh', this.onRefresh);
  }

  get available(): boolean {
    return !this.closed && !isLost(this.cluster);
  }

  channelNames(): IterableIterator<string> {
    return this.channels.names();
  }

  listenersOf(name: string): number {
    return this.channels.listenersOf(name);
  }

  /** Masters this subscriber holds a connection to (for tests and metrics). */
  get linkCount(): number {
    return this.links.size;
  }

  listen<T>(name: string, decode: Decode<T>, listener: ChannelListener<T>): Promise<() => void> {
    return this.channels.join(
      name,
      () => {
        const channel: ShardChannel = { name, decode, listeners: new Set(), subscribed: Promise.resolve(), stale: false, slot: calculateSlot(name), node: null, attempt: 0 };
        channel.subscribed = this.place(channel);
        return channel;
      },
      listener,
      (channel) => this.release(channel),
    );
  }

  whenReady(): Promise<void> {
    return whenConnected(this.cluster);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cluster.off('refresh', this.onRefresh);
    if (this.repairTimer) clearTimeout(this.repairTimer);
    const links = [...this.links.values()];
    this.links.clear();
    await Promise.all(links.map((link) => this.retire(link)));
  }

  /** The first placement of a new channel: settles its `subscribed`. */
  private async place(channel: ShardChannel): Promise<void> {
    let master = this.masterOf(channel.slot);
    if (master === null) {
      await whenConnected(this.cluster);
      master = this.masterOf(channel.slot);
    }
    if (master === null) throw new Error(`no master serves slot ${channel.slot}`);
    await this.subscribeOn(channel, master);
  }

  private masterOf(slot: number): string | null {
    return this.cluster.slots[slot]?.[0] ?? null;
  }

  /** Subscribes `channel` on `node`; once acknowledged, resyncs it if it went stale meanwhile. */
  private subscribeOn(channel: ShardChannel, node: string): Promise<void> {
    const previous = channel.node;
    if (previous !== null && previous !== node) this.unsubscribeOn(previous, channel.name);
    this.assign(channel, node);
    const attempt = ++channel.attempt;
    const current = () => this.channels.get(channel.name) === channel && channel.attempt === attempt;
    return this.link(node).redis.ssubscribe(channel.name).then(
      () => {
        if (current() && channel.stale) this.channels.resync(channel);
      },
      (error: unknown) => {
        if (current()) {
          this.log.debug({ err: error, channel: channel.name, node }, 'SSUBSCRIBE failed; placing the channel again');
          this.assign(channel, null);
          channel.stale = true;
          this.scheduleRepair(REPAIR_DELAY_MS);
        }
        throw error;
      },
    );
  }

  /** The last listener left: unsubscribe where it was, drop the link if nothing else is on it. */
  private release(channel: ShardChannel): void {
    channel.attempt += 1;
    if (channel.node !== null) this.unsubscribeOn(channel.node, channel.name);
    this.assign(channel, null);
    this.retireIdleLinks();
  }

  private unsubscribeOn(node: string, name: string): void {
    const link = this.links.get(node);
    if (link?.redis.status !== 'ready') return;
    link.redis.sunsubscribe(name).catch((error: unknown) => this.log.debug({ err: error, channel: name, node }, 'SUNSUBSCRIBE failed'));
  }

  /** Puts every channel on the master serving its slot now. Idempotent; run on each slot map refresh. */
  private reconcile(): void {
    if (this.closed) return;
    let unsettled = false;
    for (const channel of this.channels.values()) {
      const master = this.masterOf(channel.slot);
      if (master === null) {
        unsettled = true;
        continue;
      }
      if (channel.node !== master) {
        // Moving: what was published on the new master before the SSUBSCRIBE is missed.
        if (channel.node !== null) channel.stale = true;
        this.subscribeOn(channel, master).catch(() => undefined); // a failure schedules a repair
      }
      if (this.links.get(master)?.redis.status !== 'ready') unsettled = true;
    }
    this.retireIdleLinks();
    // A master that cannot be reached is usually failing over: look again until a replica serves its slots.
    if (unsettled) this.scheduleRepair(UNREACHABLE_RECHECK_MS);
  }

  /** Refreshes the cluster's slot map soon, then reconciles (once, however many ask meanwhile). */
  private scheduleRepair(delayMs: number): void {
    if (this.closed || this.repairTimer) return;
    this.repairTimer = setTimeout(() => {
      this.repairTimer = null;
      this.cluster.refreshSlotsCache(() => this.reconcile());
    }, delayMs);
    this.repairTimer.unref();
  }

  private link(node: string): Link {
    const existing = this.links.get(node);
    if (existing) return existing;
    const separator = node.lastIndexOf(':');
    const redis = new Redis({
      ...this.linkOptions,
      host: node.slice(0, separator),
      port: Number(node.slice(separator + 1)),
      // Resubscribing is this class's job: it must know when it is done, to resync readers.
      autoResubscribe: false,
      // An SSUBSCRIBE sent while the master is away fails at once, so the channel can move.
      maxRetriesPerRequest: 0,
    });
    const link: Link = { redis, connectedOnce: false, retired: false };
    redis.on('smessage', (name: string, message: string) => this.channels.dispatch(name, message));
    redis.on('error', (error: Error) => this.log.debug({ err: error, node }, 'shard subscriber connection error'));
    redis.on('close', () => {
      if (!link.retired) this.linkLost(node);
    });
    redis.on('ready', () => {
      if (link.connectedOnce && !link.retired) this.linkBack(node);
      link.connectedOnce = true;
    });
    // A MOVED answer to SSUBSCRIBE, or a SUNSUBSCRIBE Redis sent by itself: a slot moved away.
    redis.on('moved', () => this.slotsMoved(node));
    this.links.set(node, link);
    return link;
  }

  /** A master's connection dropped: its channels miss messages until subscribed again, there or on its successor. */
  private linkLost(node: string): void {
    for (const channel of this.channels.values()) if (channel.node === node) channel.stale = true;
    this.scheduleRepair(REPAIR_DELAY_MS);
  }

  /** Reconnected: its channels are subscribed again wherever their slots are served now. */
  private linkBack(node: string): void {
    for (const channel of this.channels.values()) if (channel.node === node) this.assign(channel, null);
    this.reconcile();
  }

  private slotsMoved(node: string): void {
    for (const channel of this.channels.values()) {
      if (channel.node !== node) continue;
      this.assign(channel, null);
      channel.stale = true;
    }
    this.scheduleRepair(REPAIR_DELAY_MS);
  }

  /** Moves `channel` to `node` (`null`: to be placed) in the per-node counts. */
  private assign(channel: ShardChannel, node: string | null): void {
    if (channel.node !== null) this.placed.set(channel.node, (this.placed.get(channel.node) ?? 1) - 1);
    channel.node = node;
    if (node !== null) this.placed.set(node, (this.placed.get(node) ?? 0) + 1);
  }

  private retireIdleLinks(): void {
    for (const [node, link] of this.links) {
      if ((this.placed.get(node) ?? 0) > 0) continue;
      this.links.delete(node);
      this.placed.delete(node);
      void this.retire(link);
    }
  }

  private retire(link: Link): Promise<void> {
    link.retired = true;
    return closeConnection(link.redis);
  }
}
