import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { DEFAULT_CONFIG, type Config } from '../../server/config';
import { Metrics } from '../../server/metrics';
import { ScriptedModel } from '../../server/models/scripted-model';
import { createService, type Service, type ServiceParts } from '../../server/service';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import type { RedisTarget } from '../../server/timeline/redis-connection';

export interface RunningService {
  service: Service;
  url: string;
  close(): Promise<void>;
}

/** Test defaults: quiet, fast scripted model, short timers only where a test asks. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...DEFAULT_CONFIG, port: 0, logLevel: 'silent', shutdownGraceMs: 2000, ...overrides };
}

/** Starts one service on a free port (real HTTP server, real sockets). */
export async function startService(overrides: Partial<Config> = {}, parts: ServiceParts = {}): Promise<RunningService> {
  const config = testConfig(overrides);
  const service = createService(config, {
    log: pino({ level: 'silent' }),
    metrics: new Metrics({ processMetrics: false }),
    model: new ScriptedModel({ tokenDelayMs: 1 }),
    ...parts,
  });
  const port = await service.listen(0);
  return { service, url: `http://127.0.0.1:${port}`, close: () => service.close() };
}

/**
 * Starts one service on the Redis bus at `target` (a `REDIS_URL`, or a cluster or Sentinel
 * deployment), with fast reconnects for the fault tests; resolves once its connections are up.
 * `bus` options (a key prefix, say) go to the bus; retention, outage and run lease come from
 * the config.
 */
export async function startRedisService(
  target: string | RedisTarget,
  overrides: Partial<Config> = {},
  bus: Partial<RedisBusOptions> = {},
): Promise<RunningService> {
  const redisTarget = typeof target === 'string' ? { url: target } : target;
  const config = testConfig({ ...overrides, redisUrl: redisTarget.url ?? null });
  const redisBus = new RedisBus({
    ...redisTarget,
    eventTtlS: config.eventTtlS,
    maxEventsPerSession: config.maxEventsPerSession,
    outageMs: config.busOutageMs,
    runLeaseMs: config.runLeaseMs,
    redis: { retryStrategy: () => 50 },
    ...bus,
  });
  const running = await startService(config, { bus: redisBus });
  await redisBus.whenListening();
  return running;
}

export const newSessionId = (): string => randomUUID();

/** POST /execute as JSON with fetch; returns status and parsed body. */
export async function execute(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${url}/execute`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

/** A `POST /execute` body for the synthetic workflow on `sessionId` (`undefined`: the server makes one). */
export const synthetic = (sessionId: string | undefined, params: Record<string, unknown>) => ({
  project_id: 'p1',
  query: 'load',
  ...(sessionId !== undefined && { session_id: sessionId }),
  workflow: 'synthetic',
  params,
});
