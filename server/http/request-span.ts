import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { RequestHandler } from 'express';
import { ATTR } from '../telemetry/event-spans';
import { contextFromHeaders } from '../telemetry/trace-context';
import { tracing } from '../telemetry/tracing';
import { requestScope } from './request-scope';

/**
 * A server span for each request of a route (`POST /execute`), named by method and route as
 * OpenTelemetry's HTTP conventions do, a child of the caller's `traceparent` when it sent one.
 * Its context goes to the request's scope, so what the request starts (a run) continues the
 * trace. It ends when the response does. With tracing off it only calls `next`.
 */
export function traceRoute(route: string): RequestHandler {
  return (req, res, next) => {
    if (!tracing.enabled) {
      next();
      return;
    }
    const scope = requestScope(res);
    const parent = contextFromHeaders(req.headers);
    const span = tracing.tracer.startSpan(
      `${req.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': req.method,
          'http.route': route,
          'url.path': req.path,
          [ATTR.requestId]: scope.id,
        },
      },
      parent,
    );
    scope.trace = trace.setSpan(parent, span);
    res.once('close', () => {
      span.setAttribute('http.response.status_code', res.statusCode);
      if (scope.sessionId !== undefined) span.setAttribute(ATTR.sessionId, scope.sessionId);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    next();
  };
}
