import { ConfigError, loadConfig } from './config';
import { createService } from './service';
import { busKind } from './timeline/redis-target';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`Invalid configuration: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const service = createService(config);
  const port = await service.listen();
  service.log.info({ port, bus: busKind(config), model: config.anthropicApiKey ? 'anthropic' : 'scripted' }, 'timeline service listening');

  const stop = (signal: NodeJS.Signals) => {
    service.log.info({ signal }, 'shutting down');
    // A safety net, not the plan: runs get the grace, then their last writes may wait out a
    // bus outage. Past that, something hangs; exit non-zero rather than never.
    const deadlineMs = config.shutdownGraceMs + config.busOutageMs + 5000;
    setTimeout(() => {
      service.log.error({ deadline_ms: deadlineMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, deadlineMs).unref();
    service.close().then(
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
