import cors from 'cors';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Metrics } from '../metrics';
import type { RunManager } from '../runs/run-manager';
import type { TimelineBus } from '../timeline/bus';
import type { WorkflowRegistry } from '../workflows/registry';
import { Authenticator, authenticate } from './auth';
import { refuseOtherSites, requireJson } from './cross-site';
import { demoAssetRoute, demoPageRoute } from './demo-page';
import { errorHandler, HttpError, notFound } from './errors';
import { executeRoute } from './execute-route';
import { healthzRoute, metricsRoute, readyzRoute } from './health-routes';
import { REQUEST_ID_HEADER, requestScopes } from './request-scope';
import { traceRoute } from './request-span';
import { bindingSessionAccess, runOwnerAccess } from './session-access';
import { cancelRoute, historyRoute } from './session-routes';
import type { StreamRegistry } from './stream-registry';
import { streamRoute } from './stream-route';

export interface AppDeps {
  config: Config;
  bus: TimelineBus;
  runs: RunManager;
  registry: WorkflowRegistry;
  streams: StreamRegistry;
  metrics: Metrics;
  log: Logger;
  /** True once a graceful shutdown began: new work is refused so the balancer moves on. */
  isDraining: () => boolean;
}

// `X-Request-Id` and W3C trace context (`traceparent`, `tracestate`) let a page tie its
// requests to the service's logs and traces.
const CORS_REQUEST_HEADERS = ['Content-Type', 'Prefer', 'Authorization', 'Last-Event-ID', REQUEST_ID_HEADER, 'traceparent', 'tracestate'];

function corsMiddleware(origins: string[]): RequestHandler {
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: CORS_REQUEST_HEADERS,
    exposedHeaders: ['Retry-After', 'Preference-Applied', REQUEST_ID_HEADER],
    maxAge: 600,
  });
}

function methodNotAllowed(allowed: string): RequestHandler {
  return (req, res, next) => {
    res.setHeader('Allow', allowed);
    next(new HttpError('method_not_allowed', `${req.method} is not allowed here (allowed: ${allowed})`));
  };
}

function refuseWhileDraining(isDraining: () => boolean): RequestHandler {
  return (req, res, next) => {
    if (!isDraining() || req.path === '/healthz') {
      next();
      return;
    }
    res.setHeader('Connection', 'close');
    next(new HttpError('shutting_down', 'This instance is shutting down; retry on another instance', {
      headers: { 'Retry-After': '1' },
    }));
  };
}

/** The HTTP API of docs/protocol.md; every dependency comes in, so tests can build several. */
export function createApp(deps: AppDeps): Express {
  const { config, bus, runs, registry, streams, metrics, log, isDraining } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestScopes(log));
  // Behind a balancer, so `req.ip` (per-caller limits with auth off) is the client's address.
  if (config.trustProxy !== null) app.set('trust proxy', config.trustProxy);
  if (config.corsOrigins) app.use(corsMiddleware(config.corsOrigins));
  app.use(refuseWhileDraining(isDraining));
  // After CORS, so a 401 carries its headers and a preflight never needs credentials.
  const authenticator = new Authenticator(config);
  if (authenticator.enabled) app.use(authenticate(authenticator));
  const binding = bindingSessionAccess(bus);
  const ownerOnly = runOwnerAccess(bus);

  app.get('/healthz', healthzRoute);
  app.get('/readyz', readyzRoute(bus));
  // With METRICS_PORT, only that port serves them (metrics-server.ts).
  if (config.metricsPort === null) app.get('/metrics', metricsRoute(metrics));
  app.get('/', demoPageRoute);
  app.get('/assets/:file', demoAssetRoute);

  app.get('/timeline/stream/:sessionId', binding, streamRoute({ bus, config, streams }));
  app.all('/timeline/stream/:sessionId', methodNotAllowed('GET'));

  // Every POST changes state: refused from other sites, and JSON only (see cross-site.ts).
  const postGuards = [refuseOtherSites(config.corsOrigins), requireJson];
  const json = express.json({ limit: config.bodyLimitBytes, strict: false });
  const retryAfterS = Math.ceil(config.retryMs / 1000);
  app.post('/execute', traceRoute('/execute'), postGuards, json, executeRoute({ runs, registry, bus, retryAfterS }));
  app.all('/execute', methodNotAllowed('POST'));

  app.get('/timeline/:sessionId', traceRoute('/timeline/:sessionId'), ownerOnly, historyRoute(bus));
  app.all('/timeline/:sessionId', methodNotAllowed('GET'));
  app.post('/timeline/:sessionId/cancel', traceRoute('/timeline/:sessionId/cancel'), postGuards, ownerOnly, cancelRoute(bus));
  app.all('/timeline/:sessionId/cancel', methodNotAllowed('POST'));

  app.use(notFound);
  app.use(errorHandler());
  return app;
}
