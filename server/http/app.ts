import cors from 'cors';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Metrics } from '../metrics';
import type { RunManager } from '../runs/run-manager';
import type { TimelineBus } from '../timeline/bus';
import type { WorkflowRegistry } from '../workflows/registry';
import { Authenticator, authenticate } from './auth';
import { demoAssetRoute, demoPageRoute } from './demo-page';
import { errorHandler, HttpError, notFound } from './errors';
import { executeRoute } from './execute-route';
import { healthzRoute, metricsRoute, readyzRoute } from './health-routes';
import { sessionAccess } from './session-access';
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

const CORS_REQUEST_HEADERS = ['Content-Type', 'Prefer', 'Authorization', 'Last-Event-ID'];

function corsMiddleware(origins: string[]): RequestHandler {
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: CORS_REQUEST_HEADERS,
    exposedHeaders: ['Retry-After', 'Preference-Applied'],
    maxAge: 600,
  });
}

function methodNotAllowed(allowed: string): RequestHandler {
  return (req, res, next) => {
    res.setHeader('Allow', allowed);
    next(new HttpError(405, 'method_not_allowed', `${req.method} is not allowed here (allowed: ${allowed})`));
  };
}

function refuseWhileDraining(isDraining: () => boolean): RequestHandler {
  return (req, res, next) => {
    if (!isDraining() || req.path === '/healthz') {
      next();
      return;
    }
    res.setHeader('Connection', 'close');
    next(new HttpError(503, 'shutting_down', 'This instance is shutting down; retry on another instance', {
      headers: { 'Retry-After': '1' },
    }));
  };
}

/** The HTTP API of DESIGN.md; every dependency comes in, so tests can build several. */
export function createApp(deps: AppDeps): Express {
  const { config, bus, runs, registry, streams, metrics, log, isDraining } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (config.corsOrigins) app.use(corsMiddleware(config.corsOrigins));
  app.use(refuseWhileDraining(isDraining));
  // After CORS, so a 401 carries its headers and a preflight never needs credentials.
  const authenticator = new Authenticator(config);
  if (authenticator.enabled) app.use(authenticate(authenticator, log));
  const access = sessionAccess(bus);

  app.get('/healthz', healthzRoute);
  app.get('/readyz', readyzRoute(bus));
  app.get('/metrics', metricsRoute(metrics));
  app.get('/', demoPageRoute);
  app.get('/assets/:file', demoAssetRoute);

  app.get('/timeline/stream/:sessionId', access, streamRoute({ bus, config, streams }));
  app.all('/timeline/stream/:sessionId', methodNotAllowed('GET'));

  // Any content type is read as JSON: `curl -d '{...}'` without a header should just work.
  const json = express.json({ limit: config.bodyLimitBytes, type: () => true, strict: false });
  const retryAfterS = Math.ceil(config.retryMs / 1000);
  app.post('/execute', json, executeRoute({ runs, registry, bus, retryAfterS }));
  app.all('/execute', methodNotAllowed('POST'));

  app.get('/timeline/:sessionId', access, historyRoute(bus));
  app.all('/timeline/:sessionId', methodNotAllowed('GET'));
  app.post('/timeline/:sessionId/cancel', access, cancelRoute(bus));
  app.all('/timeline/:sessionId/cancel', methodNotAllowed('POST'));

  app.use(notFound);
  app.use(errorHandler(log));
  return app;
}
