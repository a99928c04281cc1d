import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import pino from 'pino';
import { DEFAULT_CONFIG, type Config } from '../../server/config';
import { createHttpServer } from '../../server/http/http-server';
import { Metrics } from '../../server/metrics';
import { ScriptedModel } from '../../server/models/scripted-model';
import { createService, type Service, type ServiceOptions } from '../../server/service';
import { RedisBus, type RedisBusOptions } from '../../server/timeline/redis-bus';
import type { RedisTarget } from '../../server/timeline/redis-connection';

/** What a test may supply besides the config: workflows of its own, a bus, a model, a logger, metrics. */
export type ServiceParts = Omit<ServiceOptions, 'config'>;

export interface RunningService {
  service: Service;
  url: string;
  close(): Promise<void>;
}

/** Test defaults: quiet, the synthetic workflow on, fast scripted model, short timers only where a test asks. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...DEFAULT_CONFIG, logLevel: 'silent', shutdownGraceMs: 2000, enableSynthetic: true, ...overrides };
}

/** One service on the test defaults, not listening: for `request(service.app)` (supertest). */
export function createTestService(overrides: Partial<Config> = {}, parts: ServiceParts = {}): Service {
  return createService({
    config: testConfig(overrides),
    log: pino({ level: 'silent' }),
    metrics: new Metrics({ processMetrics: false }),
    model: new ScriptedModel({ tokenDelayMs: 1 }),
    ...parts,
  });
}

/** Starts one service on a free port (real HTTP server, real sockets). */
export async function startService(overrides: Partial<Config> = {}, parts: ServiceParts = {}): Promise<RunningService> {
  const service = createTestService(overrides, parts);
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

/** A second listener on a service's app that keeps the server's side of each connection. */
export interface SocketWatchingListener {
  /** `http://127.0.0.1:<port>` when listening on a port. */
  url: string;
  /** The server's side of each connection, in the order they came. */
  sockets: Socket[];
  close(): Promise<void>;
}

/**
 * Listens on `service`'s app again, on a free port or on the Unix socket `path`, keeping the
 * server's side of each connection: its `writableLength` is what the process holds unsent
 * for that client.
 */
export async function listenWatchingSockets(service: Service, path?: string): Promise<SocketWatchingListener> {
  const server: Server = createHttpServer(service.app);
  const sockets: Socket[] = [];
  server.on('connection', (socket: Socket) => sockets.push(socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (path === undefined) server.listen(0, '127.0.0.1', () => resolve());
    else server.listen(path, () => resolve());
  });
  const port = path === undefined ? (server.address() as AddressInfo).port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
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
