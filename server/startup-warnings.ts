import type { Config } from './config';

/** Something about a configuration that works but is unsafe where it runs. */
export interface StartupWarning {
  /** `error` for what leaves the service open to anyone; `warn` for the rest. */
  level: 'error' | 'warn';
  /** What it is about, as the log's `warning` field. */
  warning: string;
  message: string;
}

/**
 * What an operator must hear about at start: in production (`NODE_ENV=production`, which the
 * Docker image sets) an open service, public metrics, or the load-testing workflow.
 */
export function startupWarnings(config: Config, { production }: { production: boolean }): StartupWarning[] {
  if (!production) return [];
  const warnings: StartupWarning[] = [];
  if (config.apiKey === null && config.jwtSecret === null) {
    warnings.push({
      level: 'error',
      warning: 'auth_off',
      message:
        'AUTHENTICATION IS OFF in production: anyone who reaches this service can start runs (spending the model ' +
        "provider's key), read and cancel sessions. Set API_KEY or JWT_SECRET.",
    });
  }
  if (config.metricsPort === null) {
    warnings.push({
      level: 'warn',
      warning: 'metrics_on_api_port',
      message: '/metrics is served on the API port; set METRICS_PORT to serve it on a port of its own.',
    });
  }
  if (config.enableSynthetic) {
    warnings.push({
      level: 'warn',
      warning: 'synthetic_enabled',
      message: 'ENABLE_SYNTHETIC=1 in production: any caller can run the load-testing workflow.',
    });
  }
  return warnings;
}
