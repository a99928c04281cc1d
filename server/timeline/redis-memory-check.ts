import Redis, { type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/** What Redis says about its memory limit and what it does when it reaches it. */
export interface RedisMemorySettings {
  /** `maxmemory` in bytes; `0` means no limit. */
  maxmemory: number;
  /** `maxmemory-policy`, e.g. `noeviction`, `allkeys-lru`, `volatile-ttl`. */
  policy: string;
  /** Where they were read: `CONFIG GET`, or `INFO memory` where CONFIG is forbidden (managed Redis). */
  source: 'config' | 'info';
}

export interface RedisMemoryVerdict {
  /** `null` when neither CONFIG nor INFO could be read. */
  settings: RedisMemorySettings | null;
  /** Why the settings are unsafe for the service; empty when they are safe. */
  problems: string[];
}

/**
 * Checks, once at start, that Redis will not silently drop the service's keys. Every key the
 * service writes has a TTL, so any `volatile-*` policy may evict them as readily as an
 * `allkeys-*` one: a running session's log, lease or run lock would vanish under load, and
 * replay, `done` and the run lock would break without an error. Only `noeviction` (writes
 * fail loudly when Redis is full) keeps the guarantees, and a `maxmemory` keeps Redis itself
 * from being killed by the host. Never throws: an unreadable Redis is a warning, not a crash.
 */
export async function checkRedisMemory(url: string, log: Logger, redis: Partial<RedisOptions> = {}): Promise<RedisMemoryVerdict> {
  const connection = new Redis(url, {
    lazyConnect: true,
    connectionName: 'timeline-memory-check',
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 5000,
    // A socket still connecting when the check gives up is destroyed after this, not ioredis's 2 s.
    disconnectTimeout: 200,
    ...redis,
  });
  connection.on('error', () => undefined); // reported through the rejected commands below
  let verdict: RedisMemoryVerdict;
  try {
    await connection.connect();
    const settings = await readSettings(connection);
    verdict = { settings, problems: settings === null ? ['Redis answered neither CONFIG GET nor INFO memory'] : problemsOf(settings) };
  } catch (error) {
    verdict = { settings: null, problems: [`could not reach Redis to check it: ${(error as Error).message}`] };
  } finally {
    connection.disconnect();
  }
  const fields = { maxmemory: verdict.settings?.maxmemory, maxmemory_policy: verdict.settings?.policy, problems: verdict.problems };
  if (verdict.problems.length > 0) {
    log.warn(fields, 'Redis memory settings are unsafe for the timeline service: set maxmemory and maxmemory-policy noeviction (README: "Redis memory")');
  } else {
    log.info(fields, 'Redis memory settings checked');
  }
  return verdict;
}

async function readSettings(connection: Redis): Promise<RedisMemorySettings | null> {
  try {
    const pairs = (await connection.call('CONFIG', 'GET', 'maxmemory*')) as string[];
    const config = new Map<string, string>();
    for (let i = 0; i + 1 < pairs.length; i += 2) config.set(pairs[i], pairs[i + 1]);
    const maxmemory = Number(config.get('maxmemory'));
    const policy = config.get('maxmemory-policy');
    if (Number.isFinite(maxmemory) && policy !== undefined) return { maxmemory, policy, source: 'config' };
  } catch {
    // CONFIG is often renamed or forbidden on managed Redis (or by ACL): INFO says the same.
  }
  try {
    const info = await connection.info('memory');
    const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
    const maxmemory = Number(field('maxmemory'));
    const policy = field('maxmemory_policy');
    if (Number.isFinite(maxmemory) && policy !== undefined) return { maxmemory, policy, source: 'info' };
  } catch {
    // Forbidden too: the caller reports that nothing could be read.
  }
  return null;
}

function problemsOf({ maxmemory, policy }: RedisMemorySettings): string[] {
  const problems: string[] = [];
  if (policy !== 'noeviction') {
    problems.push(
      `maxmemory-policy is ${policy}: under memory pressure Redis may evict a running session's log, lease or run lock (every key has a TTL), silently breaking replay and done; use noeviction`,
    );
  }
  if (maxmemory === 0) {
    problems.push('maxmemory is 0 (no limit): Redis grows until the host runs out of memory; set maxmemory');
  }
  return problems;
}
