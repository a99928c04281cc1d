import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Logger } from 'pino';
import { resolveConfig, type Config } from './config';
import { createApp } from './http/app';
import { answerClientError } from './http/client-error';
import { createHttpServer } from './http/http-server';
import { createMetricsServer } from './http/metrics-server';
import { StreamRegistry } from './http/stream-registry';
import { createLogger } from './log';
import { Metrics } from './metrics';
import type { Model } from './models/model';
import { createModel } from './models/select-model';
import { RunManager } from './runs/run-manager';
import type { TimelineBus } from './timeline/bus';
import { busReachable } from './timeline/bus-reachable';
import { MemoryBus } from './timeline/memory-bus';
import { MeteredBus } from './timeline/metered-bus';
import { RedisBus } from './timeline/redis-bus';
import { checkRedisMemory } from './timeline/redis-memory-check';
import { redisTarget } from './timeline/redis-target';
import { createDefaultRegistry } from './workflows/registry';
import type { Workflow } from './workflows/workflow';

/** What `createService` takes; every field is optional. */
export interface ServiceOptions {
  /**
   * Settings that differ from the defaults (`DEFAULT_CONFIG`), each checked by the rules its
   * environment variable has; a bad value throws a `ConfigError` that names it. The service
   * reads no environment variable itself: pass `loadConfig(process.env)` for that.
   */
  config?: Partial<Config>;
  /**
   * Workflows besides the built-in `agents` and `synthetic` (see `defineWorkflow`), which
   * `POST /execute` selects by `workflow`. A name that is taken throws.
   */
  workflows?: readonly Workflow[];
  /** The logger. Defaults to pino on stdout at `config.logLevel`. */
  log?: Logger;
  /** The model workflows call. Defaults to Claude with `config.anthropicApiKey`, else the offline scripted model. */
  model?: Model;
  /** The timeline bus. Defaults to Redis with `config.redisUrl`, else the in-memory bus (one process). */
  bus?: TimelineBus;
  /** The Prometheus metrics (`GET /metrics`). Defaults to new ones, process metrics included. */
  metrics?: Metrics;
}

/** One instance of the service: the app and the parts behind it, startable and stoppable. */
export interface Service {
  config: Config;
  app: Express;
  /** The bus as given or configured (the service's own parts use it through `MeteredBus`). */
  bus: TimelineBus;
  runs: RunManager;
  streams: StreamRegistry;
  metrics: Metrics;
  log: Logger;
  /**
   * Listens on `port` (`0`: a free one), and on `METRICS_PORT` when set; resolves with the bound
   * API port.
   */
  listen(port?: number): Promise<number>;
  /** The bound `METRICS_PORT` once listening; `null` when metrics are served on the API port. */
  readonly metricsPort: number | null;
  /** Graceful stop: no new connections, streams ended, runs given the grace period, bus closed. */
  close(): Promise<void>;
}

function defaultBus(config: Config, log: Logger): TimelineBus {
  const retention = { eventTtlS: config.eventTtlS, maxEventsPerSession: config.maxEventsPerSession };
  const target = redisTarget(config);
  if (target) {
    return new RedisBus({
      ...target,
      ...retention,
      outageMs: config.busOutageMs,
      runLeaseMs: config.runLeaseMs,
      runIndexBuckets: config.runIndexBuckets,
      log,
    });
  }
  return new MemoryBus(retention);
}

/**
 * One instance of the service, on the embedded defaults unless `options` say otherwise: an
 * Express `app` to mount or hand to supertest, `listen`, and a graceful `close`.
 */
export function createService(options: ServiceOptions = {}): Service {
  const config = resolveConfig(options.config);
  const registry = createDefaultRegistry({
    enableSynthetic: config.enableSynthetic,
    maxEventsPerSession: config.maxEventsPerSession,
    maxEventBytes: config.maxEventBytes,
  });
  for (const workflow of options.workflows ?? []) registry.register(workflow);
  const log = options.log ?? createLogger(config.logLevel);
  const metrics = options.metrics ?? new Metrics();
  const rawBus = options.bus ?? defaultBus(config, log);
  const bus = new MeteredBus(rawBus, metrics.busErrors);
  const model = options.model ?? createModel(config, log);
  const runs = new RunManager({
    bus,
    model,
    log,
    metrics,
    runLeaseMs: config.runLeaseMs,
    maxRuns: config.maxRuns,
    maxRunDurationMs: config.maxRunDurationMs,
    maxRunsPerCaller: config.maxRunsPerCaller,
    publishBudget: { maxEventBytes: config.maxEventBytes, maxBacklogBytes: config.maxPublishBacklogBytes },
  });
  metrics.bind({
    busReachable: () => busReachable(rawBus, 2000),
    longestRunIdleSeconds: () => runs.longestIdleSeconds(),
  });
  const streams = new StreamRegistry({
    maxStreams: config.maxStreams,
    retryMs: config.retryMs,
    keepAliveMs: config.keepAliveMs,
    idleTimeoutMs: config.streamIdleTimeoutMs,
    maxBufferedBytes: config.maxBufferedBytes,
    slowReaderTimeoutMs: config.slowReaderTimeoutMs,
    metrics,
    log,
  });
  let closing: Promise<void> | null = null;
  const app = createApp({ config, bus, runs, registry, streams, metrics, log, isDraining: () => closing !== null });
  let server: Server | null = null;
  let metricsServer: Server | null = null;

  const listen = async (port = config.port) => {
    // In the background: a warning to read at start, never a reason to delay or refuse it.
    if (config.redisUrl !== null) void checkRedisMemory(config.redisUrl, log);
    server = createHttpServer(app);
    server.on('clientError', answerClientError(log));
    const bound = await listenOn(server, port);
    if (config.metricsPort !== null) {
      metricsServer = createMetricsServer(metrics, log);
      await listenOn(metricsServer, config.metricsPort);
    }
    return bound;
  };

  const shutdown = async () => {
    const stopAccepting = server
      ? new Promise<void>((resolve) => (server as Server).close(() => resolve()))
      : Promise.resolve();
    // Open streams end at once, with a short `retry:`: their clients reconnect to another
    // instance with Last-Event-ID while the runs here go on publishing to the bus.
    log.info({ streams: streams.size, runs: runs.activeCount, grace_ms: config.shutdownGraceMs }, 'draining');
    streams.drain();
    await runs.shutdown(config.shutdownGraceMs);
    server?.closeIdleConnections();
    // A socket that never sent a request (a client's spare keep-alive connection) is not idle
    // to Node and would hold the close until its timeout: once the last responses had a
    // moment to flush, close whatever is left.
    const lingering = setTimeout(() => server?.closeAllConnections(), 1000);
    await stopAccepting;
    clearTimeout(lingering);
    // Last: the metrics stay readable while the instance drains.
    if (metricsServer) {
      const closed = new Promise<void>((resolve) => (metricsServer as Server).close(() => resolve()));
      metricsServer.closeAllConnections();
      await closed;
    }
    await bus.close();
    log.info('shutdown complete');
  };

  return {
    config,
    app,
    bus: rawBus,
    runs,
    streams,
    metrics,
    log,
    listen,
    get metricsPort() {
      return metricsServer ? (metricsServer.address() as AddressInfo).port : null;
    },
    close: () => (closing ??= shutdown()),
  };
}

/** Listens on `port` (`0`: a free one); resolves with the bound port. */
function listenOn(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve((server.address() as AddressInfo).port));
  });
}
