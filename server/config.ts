import { isIP } from 'node:net';
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
  /**
   * `METRICS_PORT`: when set, `/metrics` is served on this port only, not on `PORT`. Unset
   * (`null`), it is served on `PORT`, so several instances on one host still differ only by
   * `PORT`. (`0`, in code only: a free port.) Defaults to `null`.
   */
  metricsPort: number | null;
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
  /**
   * `MAX_BUFFERED_BYTES`: per reader, the most unsent data the process holds for it (its
   * socket's queue plus live entries held while it catches up). A reader past it gets no
   * more live frames until its socket drains, then catches up from the log. Defaults to
   * `65536` (64 KiB).
   */
  maxBufferedBytes: number;
  /**
   * `SLOW_READER_TIMEOUT_MS`: how long a reader may stay stalled (its socket not draining)
   * before its stream is closed; its client resumes with Last-Event-ID. Defaults to `30000`.
   */
  slowReaderTimeoutMs: number;
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
  /** `MAX_RUN_DURATION_MS`: a run still going after this fails with `run_timeout`. Defaults to `900000` (15 min). */
  maxRunDurationMs: number;
  /**
   * `MAX_RUNS_PER_CALLER`: runs one caller (API key, JWT subject, or client address with auth
   * off) may have going at once on one instance. Defaults to `10`.
   */
  maxRunsPerCaller: number;
  /**
   * `TRUST_PROXY`: which proxies' `X-Forwarded-For` names the client (express's `trust proxy`):
   * a hop count, or a comma-separated list of `loopback`, `linklocal`, `uniquelocal`, addresses
   * and CIDR ranges. `null`: none, the client is the socket's peer. Defaults to `null`.
   */
  trustProxy: number | string[] | null;
  /** `MAX_EVENT_BYTES`: the largest event JSON a run may publish (accepts `128kb`). Defaults to 128 KiB. */
  maxEventBytes: number;
  /**
   * `MAX_PUBLISH_BACKLOG_BYTES`: event bytes this instance's runs may have on their way to the
   * bus at once (accepts `64mb`). Defaults to 64 MiB.
   */
  maxPublishBacklogBytes: number;
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
  /** `ENABLE_SYNTHETIC=1`: registers the load-testing `synthetic` workflow. Defaults to `false`. */
  enableSynthetic: boolean;
}

export const DEFAULT_CONFIG: Config = {
  port: 3000,
  metricsPort: null,
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
  maxBufferedBytes: 64 * 1024,
  slowReaderTimeoutMs: 30000,
  streamIdleTimeoutMs: 300000,
  eventTtlS: 3600,
  maxEventsPerSession: 10000,
  maxStreams: 10000,
  maxRuns: 1000,
  maxRunDurationMs: 15 * 60 * 1000,
  maxRunsPerCaller: 10,
  trustProxy: null,
  maxEventBytes: 128 * 1024,
  maxPublishBacklogBytes: 64 * 1024 * 1024,
  retryMs: 2000,
  runLeaseMs: 10000,
  busOutageMs: 30000,
  bodyLimitBytes: 256 * 1024,
  corsOrigins: null,
  apiKey: null,
  jwtSecret: null,
  logLevel: 'info',
  enableSynthetic: false,
};

/**
 * What a setting is given as in code (`createService({ config })`); the environment always
 * gives text. `null` means "off" for a `number` (where zero means off; elsewhere zero is
 * refused) and "unset" for every other type.
 */
type SettingType = 'number' | 'optional-number' | 'string' | 'list' | 'flag' | 'proxy' | 'nodes';

/** Each setting's environment variable, and the type a `createService` caller gives it as. */
export const CONFIG_SETTINGS = {
  port: { variable: 'PORT', type: 'number' },
  metricsPort: { variable: 'METRICS_PORT', type: 'optional-number' },
  redisUrl: { variable: 'REDIS_URL', type: 'string' },
  redisClusterNodes: { variable: 'REDIS_CLUSTER_NODES', type: 'nodes' },
  redisSentinels: { variable: 'REDIS_SENTINELS', type: 'nodes' },
  redisSentinelName: { variable: 'REDIS_SENTINEL_NAME', type: 'string' },
  redisUsername: { variable: 'REDIS_USERNAME', type: 'string' },
  redisPassword: { variable: 'REDIS_PASSWORD', type: 'string' },
  redisSentinelPassword: { variable: 'REDIS_SENTINEL_PASSWORD', type: 'string' },
  runIndexBuckets: { variable: 'RUN_INDEX_BUCKETS', type: 'number' },
  anthropicApiKey: { variable: 'ANTHROPIC_API_KEY', type: 'string' },
  anthropicModel: { variable: 'ANTHROPIC_MODEL', type: 'string' },
  anthropicBaseUrl: { variable: 'ANTHROPIC_BASE_URL', type: 'string' },
  keepAliveMs: { variable: 'KEEPALIVE_MS', type: 'number' },
  shutdownGraceMs: { variable: 'SHUTDOWN_GRACE_MS', type: 'number' },
  maxBufferedBytes: { variable: 'MAX_BUFFERED_BYTES', type: 'number' },
  slowReaderTimeoutMs: { variable: 'SLOW_READER_TIMEOUT_MS', type: 'number' },
  streamIdleTimeoutMs: { variable: 'STREAM_IDLE_TIMEOUT_MS', type: 'number' },
  eventTtlS: { variable: 'EVENT_TTL_S', type: 'number' },
  maxEventsPerSession: { variable: 'MAX_EVENTS_PER_SESSION', type: 'number' },
  maxStreams: { variable: 'MAX_STREAMS', type: 'number' },
  maxRuns: { variable: 'MAX_RUNS', type: 'number' },
  maxRunDurationMs: { variable: 'MAX_RUN_DURATION_MS', type: 'number' },
  maxRunsPerCaller: { variable: 'MAX_RUNS_PER_CALLER', type: 'number' },
  trustProxy: { variable: 'TRUST_PROXY', type: 'proxy' },
  maxEventBytes: { variable: 'MAX_EVENT_BYTES', type: 'number' },
  maxPublishBacklogBytes: { variable: 'MAX_PUBLISH_BACKLOG_BYTES', type: 'number' },
  retryMs: { variable: 'RETRY_MS', type: 'number' },
  runLeaseMs: { variable: 'RUN_LEASE_MS', type: 'number' },
  busOutageMs: { variable: 'BUS_OUTAGE_MS', type: 'number' },
  bodyLimitBytes: { variable: 'BODY_LIMIT', type: 'number' },
  corsOrigins: { variable: 'CORS_ORIGINS', type: 'list' },
  apiKey: { variable: 'API_KEY', type: 'string' },
  jwtSecret: { variable: 'JWT_SECRET', type: 'string' },
  logLevel: { variable: 'LOG_LEVEL', type: 'string' },
  enableSynthetic: { variable: 'ENABLE_SYNTHETIC', type: 'flag' },
} as const satisfies { [K in keyof Config]: { variable: string; type: SettingType } };

/**
 * A bad configuration value. The message names the environment variable, and the setting
 * too when the value came from code (`createService({ config })`).
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly reason: string,
    readonly setting?: keyof Config,
  ) {
    super(setting === undefined ? `${variable}: ${reason}` : `config.${setting} (${variable}): ${reason}`);
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

function tcpPort(env: Env, name: string, fallback: number | null): number | null {
  if (read(env, name) === undefined) return fallback;
  const port = positive(env, name, 0);
  if (port > 65535) throw new ConfigError(name, `${port} is not a TCP port`);
  return port;
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

function trustProxy(env: Env, name: string): Config['trustProxy'] {
  const raw = read(env, name);
  if (raw === undefined) return null;
  if (/^\d+$/.test(raw)) return positive(env, name, 0);
  const list = raw.split(',').map((item) => item.trim()).filter(Boolean);
  for (const item of list) {
    const [address, prefix, ...rest] = item.split('/');
    const version = isIP(address);
    const prefixOk = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= (version === 6 ? 128 : 32));
    if (!PROXY_NAMES.has(item) && (version === 0 || !prefixOk || rest.length > 0)) {
      throw new ConfigError(name, `"${item}" is not a hop count, loopback, linklocal, uniquelocal, an IP address or a CIDR range`);
    }
  }
  return list;
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

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (raw === '1' || raw === 'true') return true;
  if (raw === '0' || raw === 'false') return false;
  throw new ConfigError(name, `expected 1 or 0, got "${raw}"`);
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
  const port = tcpPort(env, 'PORT', d.port) as number;
  const metricsPort = tcpPort(env, 'METRICS_PORT', d.metricsPort);
  if (metricsPort === port) throw new ConfigError('METRICS_PORT', `must differ from PORT (${port})`);
  const maxEventBytes = size(env, 'MAX_EVENT_BYTES', d.maxEventBytes);
  const maxPublishBacklogBytes = size(env, 'MAX_PUBLISH_BACKLOG_BYTES', d.maxPublishBacklogBytes);
  if (maxPublishBacklogBytes < maxEventBytes) {
    throw new ConfigError('MAX_PUBLISH_BACKLOG_BYTES', `must be at least MAX_EVENT_BYTES (${maxEventBytes}), or no run could start`);
  }
  return {
    port,
    metricsPort,
    ...redisSettings(env),
    runIndexBuckets: buckets(env),
    anthropicApiKey: optional(env, 'ANTHROPIC_API_KEY'),
    anthropicModel: read(env, 'ANTHROPIC_MODEL') ?? d.anthropicModel,
    anthropicBaseUrl: url(env, 'ANTHROPIC_BASE_URL'),
    keepAliveMs: integer(env, 'KEEPALIVE_MS', d.keepAliveMs as number, { zeroMeansOff: true }),
    shutdownGraceMs: positive(env, 'SHUTDOWN_GRACE_MS', d.shutdownGraceMs),
    maxBufferedBytes: positive(env, 'MAX_BUFFERED_BYTES', d.maxBufferedBytes),
    slowReaderTimeoutMs: positive(env, 'SLOW_READER_TIMEOUT_MS', d.slowReaderTimeoutMs),
    streamIdleTimeoutMs: integer(env, 'STREAM_IDLE_TIMEOUT_MS', d.streamIdleTimeoutMs as number, {
      zeroMeansOff: true,
    }),
    eventTtlS: positive(env, 'EVENT_TTL_S', d.eventTtlS),
    maxEventsPerSession: positive(env, 'MAX_EVENTS_PER_SESSION', d.maxEventsPerSession),
    maxStreams: positive(env, 'MAX_STREAMS', d.maxStreams),
    maxRuns: positive(env, 'MAX_RUNS', d.maxRuns),
    maxRunDurationMs: positive(env, 'MAX_RUN_DURATION_MS', d.maxRunDurationMs),
    maxRunsPerCaller: positive(env, 'MAX_RUNS_PER_CALLER', d.maxRunsPerCaller),
    trustProxy: trustProxy(env, 'TRUST_PROXY'),
    maxEventBytes,
    maxPublishBacklogBytes,
    retryMs: positive(env, 'RETRY_MS', d.retryMs),
    runLeaseMs: positive(env, 'RUN_LEASE_MS', d.runLeaseMs),
    busOutageMs: positive(env, 'BUS_OUTAGE_MS', d.busOutageMs),
    bodyLimitBytes: size(env, 'BODY_LIMIT', d.bodyLimitBytes),
    corsOrigins: origins(env, 'CORS_ORIGINS'),
    apiKey: optional(env, 'API_KEY'),
    jwtSecret: optional(env, 'JWT_SECRET'),
    logLevel: logLevel(env, 'LOG_LEVEL'),
    enableSynthetic: flag(env, 'ENABLE_SYNTHETIC', d.enableSynthetic),
  };
}

function isNode(value: unknown): value is RedisNode {
  const node = value as RedisNode;
  return typeof node === 'object' && node !== null && typeof node.host === 'string' && typeof node.port === 'number';
}

/** A setting given in code, as the environment would give it; `undefined`: unset. */
function asVariable(setting: keyof Config, value: unknown): string | undefined {
  const { variable, type } = CONFIG_SETTINGS[setting];
  if (value === undefined) return undefined;
  if (value === null) return type === 'number' ? '0' : undefined;
  const strings = Array.isArray(value) && value.every((item) => typeof item === 'string');
  if ((type === 'number' || type === 'optional-number') && typeof value === 'number') return String(value);
  if (type === 'string' && typeof value === 'string') return value;
  if (type === 'list' && strings) return value.join(',');
  if (type === 'flag' && typeof value === 'boolean') return value ? '1' : '0';
  if (type === 'proxy' && typeof value === 'number') return String(value);
  if (type === 'proxy' && strings) return value.join(',');
  if (type === 'nodes' && Array.isArray(value) && value.every(isNode)) return value.map((node) => `${node.host}:${node.port}`).join(',');
  const expected = {
    number: 'a number',
    'optional-number': 'a number',
    string: 'a string',
    list: 'an array of strings',
    flag: 'a boolean',
    proxy: 'a hop count or an array of strings',
    nodes: 'an array of { host, port }',
  }[type];
  throw new ConfigError(variable, `expected ${expected} or null, got ${JSON.stringify(value) ?? typeof value}`, setting);
}

/**
 * The defaults with `overrides` applied, each checked by the rules `loadConfig` applies to its
 * environment variable (the same messages, naming the setting too). Reads no environment.
 */
export function resolveConfig(overrides: Partial<Config> = {}): Config {
  const env: Env = {};
  // In code, `metricsPort: 0` asks for a free port (tests); the environment takes real ports only.
  const anyMetricsPort = overrides.metricsPort === 0;
  for (const [setting, value] of Object.entries(overrides)) {
    if (setting === 'metricsPort' && anyMetricsPort) continue;
    if (!Object.hasOwn(CONFIG_SETTINGS, setting)) {
      throw new ConfigError(`config.${setting}`, `unknown setting (known: ${Object.keys(CONFIG_SETTINGS).join(', ')})`);
    }
    const key = setting as keyof Config;
    env[CONFIG_SETTINGS[key].variable] = asVariable(key, value);
  }
  try {
    const config = loadConfig(env);
    return anyMetricsPort ? { ...config, metricsPort: 0 } : config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const setting = (Object.keys(CONFIG_SETTINGS) as Array<keyof Config>).find(
      (key) => CONFIG_SETTINGS[key].variable === error.variable,
    );
    throw new ConfigError(error.variable, error.reason, setting);
  }
}
