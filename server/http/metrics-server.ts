import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ErrorBody } from '../../client-sdk/src/types';
import type { Metrics } from '../metrics';
import { answerClientError } from './client-error';

/**
 * The `METRICS_PORT` listener: `GET /metrics` (Prometheus text) and nothing else, so the
 * metrics can stay on an internal network while the API port faces the balancer.
 */
export function createMetricsServer(metrics: Metrics, log: Logger): Server {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      sendError(res, 404, 'not_found', `No route for ${req.method} ${path} (this port serves GET /metrics)`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET');
      sendError(res, 405, 'method_not_allowed', `${req.method} is not allowed here (allowed: GET)`);
      return;
    }
    metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        log.error({ err: error }, 'could not collect metrics');
        sendError(res, 500, 'internal_error', 'Internal server error');
      },
    );
  });
  server.on('clientError', answerClientError(log));
  return server;
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const body: ErrorBody = { error: { code, message } };
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}
