import type { Logger } from 'pino';

/** Receives the decoded messages of one channel, and learns when some may have been lost. */
export interface ChannelListener<T> {
  onMessage(message: T): void;
  /** Messages may have been lost (the connection dropped); called before any newer message. */
  onResync(): void;
}

/** Turns a channel's raw message into what its listeners receive; `null`: malformed, dropped. */
export type Decode<T> = (message: string) => T | null;

/**
 * The pub/sub side of `RedisBus`: plain pub/sub on one connection (`RedisSubscriber`), or
 * sharded pub/sub with one connection per cluster shard (`ShardedSubscriber`). Either way a
 * channel is subscribed while it has listeners, and its listeners are told to resync whenever
 * messages may have been lost.
 */
export interface Subscriber {
  /**
   * Resolves once messages of `name`, decoded by `decode`, reach `listener`; returns the
   * function that removes it. Every listener of a channel takes the same kind of message:
   * the first one's `decode` serves them all.
   */
  listen<T>(name: string, decode: Decode<T>, listener: ChannelListener<T>): Promise<() => void>;
  /** Channels with at least one listener. */
  channelNames(): IterableIterator<string>;
  /** Listeners of one channel (0 when it is not subscribed). */
  listenersOf(name: string): number;
  /** False while a new channel cannot be subscribed (the connection is lost): callers answer 503 at once. */
  readonly available: boolean;
  /** Resolves once the first connection is up (start-up, tests). */
  whenReady(): Promise<void>;
  close(): Promise<void>;
}

/** One subscribed channel: its decoder, its listeners, and whether they may have missed messages. */
export interface Channel {
  /** Decodes each message once, whatever the number of listeners. */
  decode: Decode<unknown>;
  listeners: Set<ChannelListener<unknown>>;
  /** Settles once Redis acknowledged the first subscribe. */
  subscribed: Promise<unknown>;
  /** The connection dropped (or the channel moved) since the listeners last heard from it. */
  stale: boolean;
}

/**
 * The channels of a subscriber, ref-counted: joined by listeners, released by the last one;
 * messages fanned out to listeners, after a resync when the channel went stale.
 */
export class ChannelTable<C extends Channel> {
  private readonly channels = new Map<string, C>();

  constructor(private readonly log: Logger) {}

  get(name: string): C | undefined {
    return this.channels.get(name);
  }

  values(): IterableIterator<C> {
    return this.channels.values();
  }

  entries(): IterableIterator<[string, C]> {
    return this.channels.entries();
  }

  names(): IterableIterator<string> {
    return this.channels.keys();
  }

  listenersOf(name: string): number {
    return this.channels.get(name)?.listeners.size ?? 0;
  }

  /**
   * Adds `listener` to channel `name`, made by `create` if it has no listener yet, and resolves
   * once the channel's first subscribe is acknowledged (a failed one is forgotten, so the next
   * listener tries again). The returned function removes the listener; when it was the last,
   * `release` unsubscribes.
   */
  async join<T>(name: string, create: () => C, listener: ChannelListener<T>, release: (channel: C) => void): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const created = create();
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
      release(joined);
    };
  }

  /** Hands a message of channel `name` to its listeners (a stale channel's resync first). */
  dispatch(name: string, message: string): void {
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

  /** Tells a stale channel's listeners to read again; it is fresh from now on. */
  resync(channel: C): void {
    channel.stale = false;
    for (const listener of channel.listeners) listener.onResync();
  }
}
