import type Redis from 'ioredis';
import type { Logger } from 'pino';

/** Receives the decoded messages of one channel, and learns when some may have been lost. */
export interface ChannelListener<T> {
  onMessage(message: T): void;
  /** Messages may have been lost (the connection dropped); called before any newer message. */
  onResync(): void;
}

/** Turns a channel's raw message into what its listeners receive; `null`: malformed, dropped. */
export type Decode<T> = (message: string) => T | null;

interface Channel {
  /** Decodes each message once, whatever the number of listeners. */
  decode: Decode<unknown>;
  listeners: Set<ChannelListener<unknown>>;
  /** Settles once Redis acknowledged the SUBSCRIBE. */
  subscribed: Promise<unknown>;
  /** The connection dropped since the listeners last heard from this channel. */
  stale: boolean;
}

/**
 * The one pub/sub connection of an instance, shared by every stream: a channel is
 * subscribed when its first listener comes and unsubscribed when its last one leaves.
 *
 * Pub/sub is at-most-once: messages published while the connection is down are gone. After a
 * reconnect every channel is subscribed again, and its listeners are told to resync (read the
 * log again) only once Redis has acknowledged the new SUBSCRIBE, so the re-read cannot miss
 * what is published in between; a message that arrives first triggers the resync itself.
 */
export class RedisSubscriber {
  private readonly channels = new Map<string, Channel>();
  private connectedOnce = false;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
  ) {
    redis.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    redis.on('close', () => {
      for (const channel of this.channels.values()) channel.stale = true;
    });
    redis.on('ready', () => {
      if (this.connectedOnce) void this.resubscribe();
      this.connectedOnce = true;
    });
  }

  /** Channels with at least one listener. */
  get channelCount(): number {
    return this.channels.size;
  }

  /** Listeners over all channels. */
  get listenerCount(): number {
    let count = 0;
    for (const channel of this.channels.values()) count += channel.listeners.size;
    return count;
  }

  /** Listeners of one channel (0 when it is not subscribed). */
  listenersOf(name: string): number {
    return this.channels.get(name)?.listeners.size ?? 0;
  }

  /**
   * Resolves once messages of `name`, decoded by `decode`, reach `listener`; returns the
   * function that removes it. Every listener of a channel takes the same kind of message:
   * the first one's `decode` serves them all.
   */
  async listen<T>(name: string, decode: Decode<T>, listener: ChannelListener<T>): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const created: Channel = { decode, listeners: new Set(), subscribed: this.redis.subscribe(name), stale: false };
      created.subscribed.catch(() => {
        if (this.channels.get(name) === created) this.channels.delete(name);
      });
      this.channels.set(name, created);
      channel = created;
    }
    const joined = channel;
    const member = listener as ChannelListener<unknown>;
    joined.listeners.add(member);
    try {
      await joined.subscribed;
    } catch (error) {
      joined.listeners.delete(member);
      throw error;
    }
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      joined.listeners.delete(member);
      if (joined.listeners.size > 0 || this.channels.get(name) !== joined) return;
      this.channels.delete(name);
      // Commands on one connection run in order, so a later SUBSCRIBE of the same channel wins.
      this.redis.unsubscribe(name).catch((error: unknown) => this.log.debug({ err: error, channel: name }, 'unsubscribe failed'));
    };
  }

  private dispatch(name: string, message: string): void {
    const channel = this.channels.get(name);
    if (!channel) return;
    if (channel.stale) this.resync(channel);
    const decoded = channel.decode(message);
    if (decoded === null) {
      this.log.warn({ channel: name }, 'ignored a malformed message');
      return;
    }
    // The Set itself, not a copy per message: a listener removed meanwhile is skipped, and one
    // added meanwhile gets a message it can only already have (readers drop what they have).
    for (const listener of channel.listeners) listener.onMessage(decoded);
  }

  private resync(channel: Channel): void {
    channel.stale = false;
    for (const listener of channel.listeners) listener.onResync();
  }

  private async resubscribe(): Promise<void> {
    const names = [...this.channels.keys()];
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
      if (channel?.stale) this.resync(channel);
    }
  }
}
