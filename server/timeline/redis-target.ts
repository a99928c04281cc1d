import type { Config } from '../config';
import type { RedisTarget } from './redis-connection';

/** The Redis deployment the configuration names, or `null` for the in-memory bus. */
export function redisTarget(config: Config): RedisTarget | null {
  const credentials = {
    ...(config.redisUsername !== null && { username: config.redisUsername }),
    ...(config.redisPassword !== null && { password: config.redisPassword }),
  };
  if (config.redisClusterNodes) return { cluster: { nodes: config.redisClusterNodes, ...credentials } };
  if (config.redisSentinels) {
    return {
      sentinel: {
        sentinels: config.redisSentinels,
        name: config.redisSentinelName as string,
        ...credentials,
        ...(config.redisSentinelPassword !== null && { sentinelPassword: config.redisSentinelPassword }),
      },
    };
  }
  return config.redisUrl ? { url: config.redisUrl } : null;
}

/** How the log names the bus: `memory`, `redis`, `redis-cluster` or `redis-sentinel`. */
export function busKind(config: Config): string {
  const target = redisTarget(config);
  if (!target) return 'memory';
  return target.cluster ? 'redis-cluster' : target.sentinel ? 'redis-sentinel' : 'redis';
}
