import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from './config';
import { createApp } from './http/app';
import { StreamRegistry } from './http/stream-registry';
import { createLogger } from './log';
import { Metrics } from './metrics';
import type { Model } from './models/model';
import { createModel } from './models/select-model';
import { RunManager } from './runs/run-manager';
import type { TimelineBus } from './timeline/bus';
import { MemoryBus } from './timeline/memory-bus';
import { RedisBus } from './timeline/redis-bus';
import { redisTarget } from './timeline/redis-target';
import { createDefaultRegistry, type WorkflowRegistry } from './workflows/registry';

/** Parts a caller (tests, benchmarks) may supply instead of the ones the config implies. */
export interface ServiceParts {
  bus?: TimelineBus;
  model?: Model;
  registry?: WorkflowRegistry;
  log?: Logger;
  metrics?: Metrics;
}

/** One instance of the service: the app and the parts behind it, startable and stoppable. */
export interface Service {
  config: Config;
  app: Express;
  bus: TimelineBus;
  runs: RunManager;
  streams: StreamRegistry;
  metrics: Metrics;
  log: Logger;
  /** Listens on `port` (`0`: a free one); resolves with the bound port. */
  listen(port?: number): Promise<number>;
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

export function createService(config: Config, parts: ServiceParts = {}): Service {
  const log = parts.log ?? createLogger(config.logLevel);
  const metrics = parts.metrics ?? new Metrics();
  const bus = parts.bus ?? defaultBus(config, log);
  const model = parts.model ?? createModel(config, log);
  const registry = parts.registry ?? createDefaultRegistry({ maxEventsPerSession: config.maxEventsPerSession });
  const runs = new RunManager({ bus, model, log, metrics, runLeaseMs: config.runLeaseMs, maxRuns: config.maxRuns });
  const streams = new StreamRegistry({
    maxStreams: config.maxStreams,
    retryMs: config.retryMs,
    keepAliveMs: config.keepAliveMs,
    idleTimeoutMs: config.streamIdleTimeoutMs,
  });
  let closing: Promise<void> | null = null;
  const app = createApp({ config, bus, runs, registry, streams, metrics, log, isDraining: () => closing !== null });
  let server: Server | null = null;

  const listen = (port = config.port) =>
    new Promise<number>((resolve, reject) => {
      server = createServer(app);
      server.once('error', reject);
      server.listen(port, () => resolve((server?.address() as AddressInfo).port));
    });

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
    await bus.close();
    log.info('shutdown complete');
  };

  return {
    config,
    app,
    bus,
    runs,
    streams,
    metrics,
    log,
    listen,
    close: () => (closing ??= shutdown()),
  };
}
