import { Writable } from 'node:stream';
import pino from 'pino';
import { checkRedisMemory } from '../../server/timeline/redis-memory-check';
import { freePort } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';

/** The start-up check of Redis's maxmemory and eviction policy, against real redis-servers. */

function capturedLog() {
  const lines: Array<{ level: number; msg: string; problems?: string[] }> = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _encoding, done) => done(void lines.push(JSON.parse(chunk.toString()))) }));
  return { log, lines };
}

const servers: RedisServer[] = [];
async function redisWith(args: string[]): Promise<RedisServer> {
  const server = await startRedisServer({ args });
  servers.push(server);
  return server;
}
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
});

it('finds a bounded Redis that never evicts safe, and says so at info level', async () => {
  const redis = await redisWith(['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction']);
  const { log, lines } = capturedLog();
  expect(await checkRedisMemory(redis.url, log)).toEqual({
    settings: { maxmemory: 64 * 1024 * 1024, policy: 'noeviction', source: 'config' },
    problems: [],
  });
  expect(lines.map((line) => [line.level, line.msg])).toEqual([[30, 'Redis memory settings checked']]);
});

it.each(['allkeys-lru', 'volatile-lru', 'volatile-ttl', 'allkeys-random'])('warns that %s may evict a running session', async (policy) => {
  const redis = await redisWith(['--maxmemory', '64mb', '--maxmemory-policy', policy]);
  const { log, lines } = capturedLog();
  const verdict = await checkRedisMemory(redis.url, log);
  expect(verdict.problems).toEqual([expect.stringMatching(new RegExp(`^maxmemory-policy is ${policy}: .*use noeviction$`))]);
  expect(lines).toEqual([expect.objectContaining({ level: 40, problems: verdict.problems })]);
});

it("warns of Redis's default: no maxmemory at all", async () => {
  const redis = await redisWith([]);
  const verdict = await checkRedisMemory(redis.url, pino({ level: 'silent' }));
  expect(verdict.settings).toMatchObject({ maxmemory: 0, policy: 'noeviction' });
  expect(verdict.problems).toEqual([expect.stringMatching(/^maxmemory is 0 \(no limit\)/)]);
});

it('reads INFO memory where CONFIG is forbidden (as on managed Redis)', async () => {
  const redis = await redisWith(['--rename-command', 'CONFIG', '', '--maxmemory', '32mb', '--maxmemory-policy', 'allkeys-lru']);
  const verdict = await checkRedisMemory(redis.url, pino({ level: 'silent' }));
  expect(verdict.settings).toEqual({ maxmemory: 32 * 1024 * 1024, policy: 'allkeys-lru', source: 'info' });
  expect(verdict.problems).toHaveLength(1);
});

it('warns, and never throws, when Redis cannot be reached', async () => {
  const { log, lines } = capturedLog();
  const verdict = await checkRedisMemory(`redis://127.0.0.1:${await freePort()}`, log);
  expect(verdict).toEqual({ settings: null, problems: [expect.stringMatching(/^could not reach Redis to check it/)] });
  expect(lines.map((line) => line.level)).toEqual([40]);
});
