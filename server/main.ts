import { ConfigError, loadConfig, type Config } from './config';
import { startupWarnings } from './startup-warnings';
import { startTracing, tracingRequested, type TracingHandle } from './telemetry/tracing';
import { busKind } from './timeline/redis-target';

/** `npm start`: the library's `createService`, configured from the environment, listening until a signal. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
    // The OTEL_* variables are the SDK's to read; a typo in the ones that switch tracing on stops the start here.
    tracingRequested();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`Invalid configuration: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const tracing: TracingHandle | null = await startTracing();
  // The service (express, ioredis, the model SDK, …) is loaded once the configuration is known
  // to be good, so a bad value is reported at once, not after loading all of it.
  const { createService } = await import('./index');
  const service = createService({ config });
  for (const warning of startupWarnings(config, { production: process.env.NODE_ENV === 'production' })) {
    service.log[warning.level]({ warning: warning.warning }, warning.message);
  }
  const port = await service.listen();
  service.log.info(
    {
      port,
      metrics_port: service.metricsPort ?? port,
      bus: busKind(config),
      model: config.anthropicApiKey ? 'anthropic' : 'scripted',
      tracing: tracing !== null,
    },
    'timeline service listening',
  );

  const stop = (signal: NodeJS.Signals) => {
    service.log.info({ signal }, 'shutting down');
    // A safety net, not the plan: runs get the grace, then their last writes may wait out a
    // bus outage. Past that, something hangs; exit non-zero rather than never.
    const deadlineMs = config.shutdownGraceMs + config.busOutageMs + 5000;
    setTimeout(() => {
      service.log.error({ deadline_ms: deadlineMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, deadlineMs).unref();
    service
      .close()
      // The spans of the last runs are still queued for export.
      .then(() => tracing?.shutdown())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          service.log.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  // `once`: a second signal gets Node's default, an immediate exit (Ctrl-C twice forces it).
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`Failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
