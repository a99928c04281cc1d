import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { ChannelTable, type Channel, type ChannelListener, type Decode, type Subscriber } from './pubsub-channels';
import { closeConnection, isLost, whenConnected } from './redis-lifecycle';

/**
 * The one plain pub/sub connection of an instance (one Redis server, or the master a Sentinel
 * names), shared by every stream: a channel is subscribed when its first listener comes and
 * unsubscribed when its last one leaves.
 *
 * Pub/sub is at-most-once: messages published while the connection is down are gone. After a
 * reconnect (to the same server, or to the master a Sentinel failover promoted) every channel
 * is subscribed again, and its listeners are told to resync (read the log again) only once
 * Redis has acknowledged the new SUBSCRIBE, so the re-read cannot miss what is published in
 * between; a message that arrives first triggers the resync itself.
 */
export class RedisSubscriber implements Subscriber {
  private readonly channels: ChannelTable<Channel>;
  private connectedOnce = false;
  private down = false;

  /** `redis` must not resubscribe by itself (`autoResubscribe: false`): this class does, then resyncs. */
  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
  ) {
    this.channels = new ChannelTable(log);
    redis.on('message', (channel: string, message: string) => this.channels.dispatch(channel, message));
    redis.on('error', (error: Error) => log.debug({ err: error, connection: 'subscriber' }, 'redis connection error'));
    redis.on('close', () => {
      if (this.connectedOnce && !this.down) log.warn({ connection: 'subscriber' }, 'redis connection lost; reconnecting');
      this.down = true;
      for (const channel of this.channels.values()) channel.stale = true;
    });
    redis.on('ready', () => {
      this.down = false;
      if (this.connectedOnce) void this.resubscribe();
      this.connectedOnce = true;
    });
  }

  get available(): boolean {
    return !isLost(this.redis);
  }

  channelNames(): IterableIterator<string> {
    return this.channels.names();
  }

  listenersOf(name: string): number {
    return this.channels.listenersOf(name);
  }

  listen<T>(name: string, decode: Decode<T>, listener: ChannelListener<T>): Promise<() => void> {
    return this.channels.join(
      name,
      () => ({ decode, listeners: new Set(), subscribed: this.redis.subscribe(name), stale: false }),
      listener,
      () => {
        // Commands on one connection run in order, so a later SUBSCRIBE of the same channel wins.
        this.redis.unsubscribe(name).catch((error: unknown) => this.log.debug({ err: error, channel: name }, 'unsubscribe failed'));
      },
    );
  }

  whenReady(): Promise<void> {
    return whenConnected(this.redis);
  }

  close(): Promise<void> {
    return closeConnection(this.redis);
  }

  private async resubscribe(): Promise<void> {
    const names = [...this.channels.names()];
    if (names.length === 0) return;
    try {
      await this.redis.subscribe(...names);
    } catch (error) {
      // The connection dropped again; the next `ready` tries again.
      this.log.warn({ err: error }, 'resubscribing after a reconnect failed');
      return;
    }
    this.log.info({ channels: names.length }, 'pub/sub channels restored after a reconnect');
    for (const name of names) {
      const channel = this.channels.get(name);
      if (channel?.stale) this.channels.resync(channel);
    }
  }
}
