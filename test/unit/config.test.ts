import { ConfigError, DEFAULT_CONFIG, loadConfig, type Config } from '../../server/config';

/** Calls `loadConfig` and returns the `ConfigError` it throws (fails the test if it does not). */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

const NUMERIC: Array<[variable: string, key: keyof Config]> = [
  ['PORT', 'port'],
  ['KEEPALIVE_MS', 'keepAliveMs'],
  ['SHUTDOWN_GRACE_MS', 'shutdownGraceMs'],
  ['MAX_BUFFERED_BYTES', 'maxBufferedBytes'],
  ['SLOW_READER_TIMEOUT_MS', 'slowReaderTimeoutMs'],
  ['STREAM_IDLE_TIMEOUT_MS', 'streamIdleTimeoutMs'],
  ['EVENT_TTL_S', 'eventTtlS'],
  ['MAX_EVENTS_PER_SESSION', 'maxEventsPerSession'],
  ['MAX_STREAMS', 'maxStreams'],
  ['MAX_RUNS', 'maxRuns'],
  ['MAX_RUN_DURATION_MS', 'maxRunDurationMs'],
  ['MAX_RUNS_PER_CALLER', 'maxRunsPerCaller'],
  ['RETRY_MS', 'retryMs'],
  ['RUN_LEASE_MS', 'runLeaseMs'],
  ['BUS_OUTAGE_MS', 'busOutageMs'],
];

const ZERO_MEANS_OFF = new Set(['KEEPALIVE_MS', 'STREAM_IDLE_TIMEOUT_MS']);
const POSITIVE_ONLY = NUMERIC.filter(([variable]) => !ZERO_MEANS_OFF.has(variable));

describe('loadConfig', () => {
  it('gives the contract defaults for an empty environment', () => {
    expect(loadConfig({})).toEqual({
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
      anthropicModel: DEFAULT_CONFIG.anthropicModel,
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
      maxRunDurationMs: 900000,
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
    });
  });

  it('treats empty and blank values as unset', () => {
    expect(loadConfig({ PORT: '', KEEPALIVE_MS: '  ', REDIS_URL: '', LOG_LEVEL: '' })).toEqual(loadConfig({}));
  });

  it.each(NUMERIC)('parses %s into %s', (variable, key) => {
    expect(loadConfig({ [variable]: '1234' })[key]).toBe(1234);
    expect(loadConfig({ [variable]: ' 77 ' })[key]).toBe(77);
  });

  it.each([...ZERO_MEANS_OFF])('reads %s=0 as off (null)', (variable) => {
    const key = NUMERIC.find(([name]) => name === variable)![1];
    expect(loadConfig({ [variable]: '0' })[key]).toBeNull();
  });

  it.each([...ZERO_MEANS_OFF])('rejects a negative or non-numeric %s, naming it', (variable) => {
    for (const bad of ['-1', 'abc', '1.5', '10ms']) {
      const error = configError({ [variable]: bad });
      expect(error.variable).toBe(variable);
      expect(error.message).toContain(variable);
    }
  });

  it.each(POSITIVE_ONLY)('rejects zero, negative and non-numeric %s, naming it', (variable) => {
    for (const bad of ['0', '-5', 'abc', '2.5', '1e3', '0x10', '99999999999999999999']) {
      const error = configError({ [variable]: bad });
      expect(error.variable).toBe(variable);
      expect(error.message).toContain(variable);
    }
  });

  it('rejects a PORT above 65535', () => {
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
    expect(configError({ PORT: '65536' }).message).toContain('PORT');
  });

  describe('METRICS_PORT', () => {
    it('is unset by default (metrics on PORT), and a TCP port other than PORT when set', () => {
      expect(loadConfig({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
      expect(loadConfig({ PORT: '8080', METRICS_PORT: '3000' }).metricsPort).toBe(3000);
    });

    it.each([['0'], ['65536'], ['abc'], ['-1']])('rejects %j, naming METRICS_PORT', (bad) => {
      expect(configError({ METRICS_PORT: bad }).variable).toBe('METRICS_PORT');
    });

    it('rejects the same port as PORT', () => {
      expect(configError({ METRICS_PORT: '3000' }).message).toBe('METRICS_PORT: must differ from PORT (3000)');
      expect(configError({ PORT: '8080', METRICS_PORT: '8080' }).variable).toBe('METRICS_PORT');
    });
  });

  describe('MAX_EVENT_BYTES and MAX_PUBLISH_BACKLOG_BYTES', () => {
    it('take bytes or size strings', () => {
      expect(loadConfig({ MAX_EVENT_BYTES: '64kb', MAX_PUBLISH_BACKLOG_BYTES: '1mb' })).toMatchObject({
        maxEventBytes: 64 * 1024,
        maxPublishBacklogBytes: 1024 * 1024,
      });
    });

    it('rejects a backlog smaller than one event, naming MAX_PUBLISH_BACKLOG_BYTES', () => {
      const error = configError({ MAX_EVENT_BYTES: '64kb', MAX_PUBLISH_BACKLOG_BYTES: '32kb' });
      expect(error.variable).toBe('MAX_PUBLISH_BACKLOG_BYTES');
    });

    it.each(['MAX_EVENT_BYTES', 'MAX_PUBLISH_BACKLOG_BYTES'])('rejects zero and nonsense in %s', (variable) => {
      for (const bad of ['0', 'lots', '-1kb']) expect(configError({ [variable]: bad }).variable).toBe(variable);
    });
  });

  describe('TRUST_PROXY', () => {
    it('reads a hop count, or names, addresses and CIDR ranges', () => {
      expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
      expect(loadConfig({ TRUST_PROXY: 'loopback, uniquelocal' }).trustProxy).toEqual(['loopback', 'uniquelocal']);
      expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8,192.168.1.7,fd00::/8' }).trustProxy).toEqual(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    });

    it.each(['0', 'everyone', '10.0.0.0/33', '10.0.0/8', 'true', '::1/129'])('rejects %j, naming TRUST_PROXY', (bad) => {
      expect(configError({ TRUST_PROXY: bad }).variable).toBe('TRUST_PROXY');
    });
  });

  describe('BODY_LIMIT', () => {
    it('accepts plain bytes and size strings', () => {
      expect(loadConfig({ BODY_LIMIT: '1024' }).bodyLimitBytes).toBe(1024);
      expect(loadConfig({ BODY_LIMIT: '256kb' }).bodyLimitBytes).toBe(256 * 1024);
      expect(loadConfig({ BODY_LIMIT: '1mb' }).bodyLimitBytes).toBe(1024 * 1024);
      expect(loadConfig({ BODY_LIMIT: '2MB' }).bodyLimitBytes).toBe(2 * 1024 * 1024);
    });

    it.each(['abc', '0', '-1kb', 'kb'])('rejects %j, naming BODY_LIMIT', (bad) => {
      const error = configError({ BODY_LIMIT: bad });
      expect(error.variable).toBe('BODY_LIMIT');
      expect(error.message).toContain('BODY_LIMIT');
    });
  });

  describe('LOG_LEVEL', () => {
    it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('accepts %s', (level) => {
      expect(loadConfig({ LOG_LEVEL: level }).logLevel).toBe(level);
    });

    it('is case-insensitive', () => {
      expect(loadConfig({ LOG_LEVEL: 'DEBUG' }).logLevel).toBe('debug');
    });

    it.each(['verbose', 'warning', '10'])('rejects %j, naming LOG_LEVEL', (bad) => {
      const error = configError({ LOG_LEVEL: bad });
      expect(error.variable).toBe('LOG_LEVEL');
      expect(error.message).toContain('LOG_LEVEL');
    });
  });

  describe('CORS_ORIGINS', () => {
    it('reads a comma-separated list of origins, trimming spaces', () => {
      expect(loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' }).corsOrigins).toEqual([
        'https://app.example.com',
        'http://localhost:5173',
      ]);
    });

    it('reads * as any origin', () => {
      expect(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*']);
    });

    it('rejects something that is not an origin, naming CORS_ORIGINS', () => {
      for (const bad of ['app.example.com', 'https://app.example.com/path', 'ftp://x.example.com']) {
        const error = configError({ CORS_ORIGINS: bad });
        expect(error.variable).toBe('CORS_ORIGINS');
        expect(error.message).toContain('CORS_ORIGINS');
      }
    });
  });

  describe('ENABLE_SYNTHETIC', () => {
    it('reads 1/true as on and 0/false as off', () => {
      for (const on of ['1', 'true', 'TRUE']) expect(loadConfig({ ENABLE_SYNTHETIC: on }).enableSynthetic).toBe(true);
      for (const off of ['0', 'false']) expect(loadConfig({ ENABLE_SYNTHETIC: off }).enableSynthetic).toBe(false);
    });

    it.each(['yes', '2', 'on'])('rejects %j, naming ENABLE_SYNTHETIC', (bad) => {
      expect(configError({ ENABLE_SYNTHETIC: bad }).variable).toBe('ENABLE_SYNTHETIC');
    });
  });

  describe('URLs', () => {
    it('accepts a Redis URL', () => {
      expect(loadConfig({ REDIS_URL: 'redis://localhost:6379/0' }).redisUrl).toBe('redis://localhost:6379/0');
    });

    it('rejects a REDIS_URL that is not a URL, naming it', () => {
      for (const bad of ['localhost 6379', 'not a url']) {
        const error = configError({ REDIS_URL: bad });
        expect(error.variable).toBe('REDIS_URL');
        expect(error.message).toContain('REDIS_URL');
      }
    });

    it('rejects an ANTHROPIC_BASE_URL that is not a URL, naming it', () => {
      expect(loadConfig({ ANTHROPIC_BASE_URL: 'http://127.0.0.1:8080' }).anthropicBaseUrl).toBe('http://127.0.0.1:8080');
      expect(configError({ ANTHROPIC_BASE_URL: 'nope' }).variable).toBe('ANTHROPIC_BASE_URL');
    });
  });

  describe('Redis deployment', () => {
    it('reads REDIS_CLUSTER_NODES as a list of host:port', () => {
      expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:7000, 10.0.0.2:7001,[::1]:7002' }).redisClusterNodes).toEqual([
        { host: 'redis-1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ]);
    });

    it('reads REDIS_SENTINELS with REDIS_SENTINEL_NAME, and the credentials of both modes', () => {
      expect(
        loadConfig({
          REDIS_SENTINELS: 's1:26379,s2:26379',
          REDIS_SENTINEL_NAME: 'timeline',
          REDIS_USERNAME: 'app',
          REDIS_PASSWORD: 'secret',
          REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
        }),
      ).toMatchObject({
        redisSentinels: [
          { host: 's1', port: 26379 },
          { host: 's2', port: 26379 },
        ],
        redisSentinelName: 'timeline',
        redisUsername: 'app',
        redisPassword: 'secret',
        redisSentinelPassword: 'sentinel-secret',
      });
      expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:1', REDIS_PASSWORD: 'pw' }).redisPassword).toBe('pw');
    });

    it.each(['redis-1', 'redis-1:', ':7000', 'redis-1:0', 'redis-1:65536', 'redis-1:70a', 'a b:7000', ','])(
      'rejects %j in REDIS_CLUSTER_NODES and REDIS_SENTINELS, naming the variable',
      (bad) => {
        for (const variable of ['REDIS_CLUSTER_NODES', 'REDIS_SENTINELS']) {
          const error = configError({ [variable]: bad, REDIS_SENTINEL_NAME: 'timeline' });
          expect(error.variable).toBe(variable);
          expect(error.message).toContain(variable);
        }
      },
    );

    it.each([
      [{ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:7000' }, 'REDIS_CLUSTER_NODES', 'REDIS_URL'],
      [{ REDIS_URL: 'redis://a:6379', REDIS_SENTINELS: 'b:26379', REDIS_SENTINEL_NAME: 'm' }, 'REDIS_SENTINELS', 'REDIS_URL'],
      [{ REDIS_CLUSTER_NODES: 'b:7000', REDIS_SENTINELS: 'c:26379', REDIS_SENTINEL_NAME: 'm' }, 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'],
    ])('refuses two Redis modes at once (%j), naming both', (env, variable, other) => {
      const error = configError(env);
      expect(error.variable).toBe(variable);
      expect(error.message).toContain(other);
    });

    it('needs REDIS_SENTINELS and REDIS_SENTINEL_NAME together', () => {
      expect(configError({ REDIS_SENTINELS: 's1:26379' }).variable).toBe('REDIS_SENTINEL_NAME');
      expect(configError({ REDIS_SENTINEL_NAME: 'timeline' }).variable).toBe('REDIS_SENTINEL_NAME');
      expect(configError({ REDIS_SENTINEL_PASSWORD: 'pw' }).variable).toBe('REDIS_SENTINEL_PASSWORD');
    });

    it('refuses REDIS_USERNAME and REDIS_PASSWORD outside Cluster and Sentinel modes, pointing to REDIS_URL', () => {
      for (const variable of ['REDIS_USERNAME', 'REDIS_PASSWORD']) {
        for (const env of [{}, { REDIS_URL: 'redis://a:6379' }] as Array<Record<string, string>>) {
          const error = configError({ ...env, [variable]: 'x' });
          expect(error.variable).toBe(variable);
          expect(error.message).toContain('REDIS_URL');
        }
      }
    });

    it('reads RUN_INDEX_BUCKETS from 1 to 1024', () => {
      expect(loadConfig({ RUN_INDEX_BUCKETS: '1' }).runIndexBuckets).toBe(1);
      expect(loadConfig({ RUN_INDEX_BUCKETS: '1024' }).runIndexBuckets).toBe(1024);
      for (const bad of ['0', '1025', '-1', 'many']) expect(configError({ RUN_INDEX_BUCKETS: bad }).variable).toBe('RUN_INDEX_BUCKETS');
    });
  });

  it('reads the optional strings as given', () => {
    const config = loadConfig({
      ANTHROPIC_API_KEY: 'sk-test',
      ANTHROPIC_MODEL: 'claude-test',
      API_KEY: 'shared',
      JWT_SECRET: 'secret',
    });
    expect(config).toMatchObject({
      anthropicApiKey: 'sk-test',
      anthropicModel: 'claude-test',
      apiKey: 'shared',
      jwtSecret: 'secret',
    });
  });
});
