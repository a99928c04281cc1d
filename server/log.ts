import pino, { type Logger } from 'pino';
import type { Config } from './config';

/** The service's logger. Credentials never reach it: see `redactUrl`. */
export function createLogger(level: Config['logLevel']): Logger {
  return pino({ level, base: { service: 'timeline' } });
}

/** Drops the query string of a URL before it is logged (it may carry `access_token`). */
export function redactUrl(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
