import Redis, { Cluster, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisNode } from '../config';
import { BusUnavailableError } from './bus';
import type { Subscriber } from './pubsub-channels';
import type { PublishCommand } from './redis-scripts';
import { RedisSubscriber } from './redis-subscriber';
import { ShardedSubscriber } from './sharded-subscriber';

/** A Redis Cluster (`REDIS_CLUSTER_NODES`). */
export interface ClusterTarget {
  /** Startup nodes: any few of the cluster's nodes; the rest is discovered. */
  nodes: RedisNode[];
  username?: string;
  password?: string;
}

/** A master named by Sentinels (`REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`). */
export interface SentinelTarget {
  sentinels: RedisNode[];
  /** The master name the Sentinels monitor. */
  name: string;
  /** Credentials of the master and replicas. */
  username?: string;
  password?: string;
  /** The Sentinels' own password, if they have one. */
  sentinelPassword?: string;
}

/** Exactly one of the three. */
export interface RedisTarget {
  /** One server: `redis://[:password@]host:port[/db]` (`rediss://` for TLS). */
  url?: string;
  cluster?: ClusterTarget;
  sentinel?: SentinelTarget;
}

/** The connections of one `RedisBus`: two, or on a cluster one client plus one subscriber per shard. */
export interface RedisConnections {
  /** Scripts and reads: one connection, or a cluster client that routes each to its slot's master. */
  commands: Redis | Cluster;
  subscriber: Subscriber;
  /** How the scripts publish: sharded pub/sub on a cluster, plain elsewhere. */
  publishCommand: PublishCommand;
  /** Rejects unless the deployment takes writes (readiness). */
  check(): Promise<void>;
}

export interface ConnectOptions {
  /** Connection names start with it (`CLIENT LIST` shows whose they are). */
  name: string;
  /** Options of every connection: retry policy, and tests' overrides. */
  base: RedisOptions;
  /** How long a command may retry across a failover before it fails. */
  outageMs: number;
  log: Logger;
}

/** Delay between a cluster client's retries of a command while a shard fails over. */
const CLUSTER_RETRY_DELAY_MS = 100;

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

/** Opens the connections `target` names: one server, a Sentinel-managed master, or a cluster. */
export function connectRedis(target: RedisTarget, options: ConnectOptions): RedisConnections {
  const modes = [target.url, target.cluster, target.sentinel].filter((mode) => mode !== undefined);
  if (modes.length !== 1) throw new Error('RedisBus needs exactly one of url, cluster and sentinel');
  if (target.cluster) return connectCluster(target.cluster, options);
  const { name, base, log } = options;
  const connect = (connectionName: string, extra: RedisOptions = {}) => {
    const settings = { ...base, connectionName: `${name}${connectionName}`, ...extra };
    if (target.url !== undefined) return new Redis(target.url, settings);
    const sentinel = target.sentinel as SentinelTarget;
    return new Redis({
      ...settings,
      sentinels: sentinel.sentinels,
      name: sentinel.name,
      username: sentinel.username,
      password: sentinel.password,
      sentinelPassword: sentinel.sentinelPassword,
      // A failover without a crash leaves the connection open to what is now a replica: a
      // write that meets it reconnects (the Sentinels name the new master) and is sent again.
      // (ioredis's `failoverDetector` is not used: a switch announced while the connection is
      // already reconnecting leaves it closed for good, ioredis 6.0.)
      reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
    });
  };
  const commands = connect('commands');
  return {
    commands,
    // Resubscribing is the subscriber's job: it must know when it is done, to resync readers.
    subscriber: new RedisSubscriber(connect('subscriber', { autoResubscribe: false }), log),
    publishCommand: 'PUBLISH',
    check: target.url !== undefined ? () => ping(commands) : () => checkMaster(commands),
  };
}

function connectCluster(target: ClusterTarget, { name, base, outageMs, log }: ConnectOptions): RedisConnections {
  const nodeOptions: RedisOptions = { ...base, username: target.username, password: target.password };
  const commands = new Cluster(target.nodes, {
    redisOptions: { ...nodeOptions, connectionName: `${name}commands` },
    clusterRetryStrategy: reconnectDelay,
    // A command to a shard failing over is retried until a replica serves its slot, for up to
    // the outage limit (ioredis counts retries, not time).
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
    maxRedirections: Math.max(16, Math.ceil(outageMs / CLUSTER_RETRY_DELAY_MS)),
  });
  return {
    commands,
    subscriber: new ShardedSubscriber(commands, { ...nodeOptions, connectionName: `${name}subscriber` }, log),
    publishCommand: 'SPUBLISH',
    check: () => checkCluster(commands),
  };
}

async function ping(connection: Redis | Cluster): Promise<void> {
  await connection.ping();
}

/** Connected to the master the Sentinels name, and it still is one. */
async function checkMaster(connection: Redis): Promise<void> {
  const [role] = (await connection.call('ROLE')) as [string];
  if (role !== 'master') throw new BusUnavailableError(`the Sentinel-named server answers as ${role}`);
}

/** The cluster client is ready and a node says every slot is served. */
async function checkCluster(cluster: Cluster): Promise<void> {
  if (cluster.status !== 'ready') throw new BusUnavailableError(`Redis Cluster client is ${cluster.status}`);
  const info = (await cluster.cluster('INFO')) as string;
  if (!/^cluster_state:ok/m.test(info)) throw new BusUnavailableError('Redis Cluster state is not ok');
}
