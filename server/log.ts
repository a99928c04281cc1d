import pino, { type Logger } from 'pino';
import type { Config } from './config';

/** The service's logger. Credentials never reach it: `authenticate` cuts `?access_token=` out of the URL first. */
export function createLogger(level: Config['logLevel']): Logger {
  return pino({ level, base: { service: 'timeline' } });
}

/** Drops the query string of a URL before it is logged (e.g. `ANTHROPIC_BASE_URL`: it may carry a key). */
export function redactUrl(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
