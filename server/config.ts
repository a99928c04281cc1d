import bytes from 'bytes';
import { z } from 'zod';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One Redis node or Sentinel, as `host:port`. */
export interface RedisNode {
  host: string;
  port: number;
}

/** `RUN_INDEX_BUCKETS` at most: each instance reads every bucket at each lease sweep. */
export const MAX_RUN_INDEX_BUCKETS = 1024;

/** Everything the service reads from the environment, read once at start. */
export interface Config {
  /** `PORT`. Defaults to `3000`. */
  port: number;
  /** `REDIS_URL`. Unset (and no Cluster or Sentinel) means the in-memory bus (one process only). */
  redisUrl: string | null;
  /** `REDIS_CLUSTER_NODES`: startup nodes of a Redis Cluster (exclusive with the other modes). */
  redisClusterNodes: RedisNode[] | null;
  /** `REDIS_SENTINELS`: the Sentinels that name the master (exclusive with the other modes). */
  redisSentinels: RedisNode[] | null;
  /** `REDIS_SENTINEL_NAME`: the master name the Sentinels monitor; required with `REDIS_SENTINELS`. */
  redisSentinelName: string | null;
  /** `REDIS_USERNAME`: ACL user of the Redis nodes in Cluster and Sentinel modes (`REDIS_URL` carries its own). */
  redisUsername: string | null;
  /** `REDIS_PASSWORD`: password of the Redis nodes in Cluster and Sentinel modes (`REDIS_URL` carries its own). */
  redisPassword: string | null;
  /** `REDIS_SENTINEL_PASSWORD`: the Sentinels' own password, when they have one. */
  redisSentinelPassword: string | null;
  /** `RUN_INDEX_BUCKETS`: keys the index of running runs is spread over (Redis only). Defaults to `16`. */
  runIndexBuckets: number;
  /** `ANTHROPIC_API_KEY`. Unset means the offline scripted model. */
  anthropicApiKey: string | null;
  /** `ANTHROPIC_MODEL`. Defaults to `claude-sonnet-5-5`. */
  anthropicModel: string;
  /** `ANTHROPIC_BASE_URL`. Unset means the SDK's default. */
  anthropicBaseUrl: string | null;
  /** `KEEPALIVE_MS`, `null` = off. Defaults to `15000`. */
  keepAliveMs: number | null;
  /** `SHUTDOWN_GRACE_MS`. Defaults to `10000`. */
  shutdownGraceMs: number;
  /** `MAX_BUFFERED_BYTES`: unsent bytes after which a slow reader is cut. Defaults to 1 MiB. */
  maxBufferedBytes: number;
  /** `STREAM_IDLE_TIMEOUT_MS`, `null` = off. Defaults to `300000`. */
  streamIdleTimeoutMs: number | null;
  /** `EVENT_TTL_S`: how long a session's log is kept after its last write. Defaults to `3600`. */
  eventTtlS: number;
  /** `MAX_EVENTS_PER_SESSION`: the log keeps the newest this many events. Defaults to `10000`. */
  maxEventsPerSession: number;
  /** `MAX_STREAMS`: open streams per instance. Defaults to `10000`. */
  maxStreams: number;
  /** `MAX_RUNS`: workflow runs executing at once on this instance. Defaults to `1000`. */
  maxRuns: number;
  /** `RETRY_MS`: the SSE `retry:` hint. Defaults to `2000`. */
  retryMs: number;
  /** `RUN_LEASE_MS`: how long a run owner's lease lasts unrenewed. Defaults to `10000`. */
  runLeaseMs: number;
  /** `BUS_OUTAGE_MS`: how long a run survives an unreachable bus. Defaults to `30000`. */
  busOutageMs: number;
  /** `BODY_LIMIT` in bytes (accepts `256kb`). Defaults to 256 KiB. */
  bodyLimitBytes: number;
  /** `CORS_ORIGINS`: allowed origins, `['*']` for any; `null` = no CORS headers. */
  corsOrigins: string[] | null;
  /** `API_KEY`: one shared bearer key. */
  apiKey: string | null;
  /** `JWT_SECRET`: HS256 secret for bearer tokens. */
  jwtSecret: string | null;
  /** `LOG_LEVEL`. Defaults to `info`. */
  logLevel: (typeof LOG_LEVELS)[number];
}

export const DEFAULT_CONFIG: Config = {
  port: 3000,
  redisUrl: null,
  redisClusterNodes: null,
  redisSentinels: null,
  redisSentinelName: null,
  redisUsername: null,
  redisPassword: null,
  redisSentinelPassword: null,
  runIndexBuckets: 16,
  anthropicApiKey: null,
  anthropicModel: 'claude-sonnet-5-5',
  anthropicBaseUrl: null,
  keepAliveMs: 15000,
  shutdownGraceMs: 10000,
  maxBufferedBytes: 1024 * 1024,
  streamIdleTimeoutMs: 300000,
  eventTtlS: 3600,
  maxEventsPerSession: 10000,
  maxStreams: 10000,
  maxRuns: 1000,
  retryMs: 2000,
  runLeaseMs: 10000,
  busOutageMs: 30000,
  bodyLimitBytes: 256 * 1024,
  corsOrigins: null,
  apiKey: null,
  jwtSecret: null,
  logLevel: 'info',
};

/** A bad environment value; the message names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, { zeroMeansOff = false } = {}): number | null {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new ConfigError(name, `"${raw}" is too large`);
  if (value === 0) {
    if (zeroMeansOff) return null;
    throw new ConfigError(name, 'must be greater than 0');
  }
  return value;
}

function positive(env: Env, name: string, fallback: number): number {
  return integer(env, name, fallback) as number;
}

function optional(env: Env, name: string): string | null {
  return read(env, name) ?? null;
}

function url(env: Env, name: string): string | null {
  const raw = read(env, name);
  if (raw === undefined) return null;
  if (!z.url().safeParse(raw).success) throw new ConfigError(name, `"${raw}" is not a URL`);
  return raw;
}

/** A comma-separated list of `host:port` (IPv6 in brackets: `[::1]:6379`). */
function nodes(env: Env, name: string): RedisNode[] | null {
  const raw = read(env, name);
  if (raw === undefined) return null;
  const list = raw.split(',').map((entry) => entry.trim()).filter(Boolean);
  if (list.length === 0) throw new ConfigError(name, 'expected host:port[,host:port...]');
  return list.map((entry) => {
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) throw new ConfigError(name, `"${entry}" is not host:port`);
    return { host: match[1].replace(/^\[(.*)\]$/, '$1'), port };
  });
}

/**
 * The Redis deployment: one of `REDIS_URL`, `REDIS_CLUSTER_NODES` or `REDIS_SENTINELS` (with
 * `REDIS_SENTINEL_NAME`), or none (the in-memory bus); the credentials of the last two.
 */
function redisSettings(env: Env) {
  const settings = {
    redisUrl: url(env, 'REDIS_URL'),
    redisClusterNodes: nodes(env, 'REDIS_CLUSTER_NODES'),
    redisSentinels: nodes(env, 'REDIS_SENTINELS'),
    redisSentinelName: optional(env, 'REDIS_SENTINEL_NAME'),
    redisUsername: optional(env, 'REDIS_USERNAME'),
    redisPassword: optional(env, 'REDIS_PASSWORD'),
    redisSentinelPassword: optional(env, 'REDIS_SENTINEL_PASSWORD'),
  };
  const modes = (['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'] as const).filter((name) => read(env, name) !== undefined);
  if (modes.length > 1) {
    throw new ConfigError(modes[1], `cannot be set together with ${modes[0]}: choose one Redis deployment`);
  }
  if (settings.redisSentinels && !settings.redisSentinelName) {
    throw new ConfigError('REDIS_SENTINEL_NAME', 'is required with REDIS_SENTINELS (the master name the Sentinels monitor)');
  }
  if (settings.redisSentinelName && !settings.redisSentinels) {
    throw new ConfigError('REDIS_SENTINEL_NAME', 'needs REDIS_SENTINELS (the Sentinels to ask for that master)');
  }
  if (settings.redisSentinelPassword && !settings.redisSentinels) {
    throw new ConfigError('REDIS_SENTINEL_PASSWORD', 'needs REDIS_SENTINELS');
  }
  for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD'] as const) {
    if (read(env, name) !== undefined && !settings.redisClusterNodes && !settings.redisSentinels) {
      throw new ConfigError(name, 'applies to REDIS_CLUSTER_NODES or REDIS_SENTINELS; with REDIS_URL put it in the URL (redis://user:password@host:port)');
    }
  }
  return settings;
}

function size(env: Env, name: string, fallback: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = bytes.parse(raw);
  if (value === null || !Number.isFinite(value) || value <= 0 || !Number.isInteger(value)) {
    throw new ConfigError(name, `expected a positive size in bytes or like "256kb", got "${raw}"`);
  }
  return value;
}

function origins(env: Env, name: string): string[] | null {
  const raw = read(env, name);
  if (raw === undefined) return null;
  const list = raw.split(',').map((origin) => origin.trim()).filter(Boolean);
  for (const origin of list) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(name, `"${origin}" is not an origin like https://app.example.com or *`);
    }
  }
  return list.length === 0 ? null : list;
}

function logLevel(env: Env, name: string): Config['logLevel'] {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return DEFAULT_CONFIG.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${LOG_LEVELS.join(', ')}, got "${raw}"`);
  }
  return raw as Config['logLevel'];
}

function buckets(env: Env): number {
  const value = positive(env, 'RUN_INDEX_BUCKETS', DEFAULT_CONFIG.runIndexBuckets);
  if (value > MAX_RUN_INDEX_BUCKETS) throw new ConfigError('RUN_INDEX_BUCKETS', `${value} is more than ${MAX_RUN_INDEX_BUCKETS}`);
  return value;
}

/** Reads and validates the whole configuration; throws `ConfigError` on the first bad value. */
export function loadConfig(env: Env = process.env): Config {
  const d = DEFAULT_CONFIG;
  const port = positive(env, 'PORT', d.port);
  if (port > 65535) throw new ConfigError('PORT', `${port} is not a TCP port`);
  return {
    port,
    ...redisSettings(env),
    runIndexBuckets: buckets(env),
    anthropicApiKey: optional(env, 'ANTHROPIC_API_KEY'),
    anthropicModel: read(env, 'ANTHROPIC_MODEL') ?? d.anthropicModel,
    anthropicBaseUrl: url(env, 'ANTHROPIC_BASE_URL'),
    keepAliveMs: integer(env, 'KEEPALIVE_MS', d.keepAliveMs as number, { zeroMeansOff: true }),
    shutdownGraceMs: positive(env, 'SHUTDOWN_GRACE_MS', d.shutdownGraceMs),
    maxBufferedBytes: positive(env, 'MAX_BUFFERED_BYTES', d.maxBufferedBytes),
    streamIdleTimeoutMs: integer(env, 'STREAM_IDLE_TIMEOUT_MS', d.streamIdleTimeoutMs as number, {
      zeroMeansOff: true,
    }),
    eventTtlS: positive(env, 'EVENT_TTL_S', d.eventTtlS),
    maxEventsPerSession: positive(env, 'MAX_EVENTS_PER_SESSION', d.maxEventsPerSession),
    maxStreams: positive(env, 'MAX_STREAMS', d.maxStreams),
    maxRuns: positive(env, 'MAX_RUNS', d.maxRuns),
    retryMs: positive(env, 'RETRY_MS', d.retryMs),
    runLeaseMs: positive(env, 'RUN_LEASE_MS', d.runLeaseMs),
    busOutageMs: positive(env, 'BUS_OUTAGE_MS', d.busOutageMs),
    bodyLimitBytes: size(env, 'BODY_LIMIT', d.bodyLimitBytes),
    corsOrigins: origins(env, 'CORS_ORIGINS'),
    apiKey: optional(env, 'API_KEY'),
    jwtSecret: optional(env, 'JWT_SECRET'),
    logLevel: logLevel(env, 'LOG_LEVEL'),
  };
}
