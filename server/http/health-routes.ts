import type { RequestHandler } from 'express';
import type { Metrics } from '../metrics';
import type { TimelineBus } from '../timeline/bus';
import { busReachable } from '../timeline/bus-reachable';
import { HttpError } from './errors';

export const healthzRoute: RequestHandler = (_req, res) => {
  res.json({ status: 'ok' });
};

/** Ready when the bus answers within `timeoutMs`. */
export function readyzRoute(bus: TimelineBus, timeoutMs = 2000): RequestHandler {
  return async (_req, res) => {
    if (!(await busReachable(bus, timeoutMs))) throw new HttpError('not_ready', 'The timeline bus is not reachable');
    res.json({ status: 'ready' });
  };
}

export function metricsRoute(metrics: Metrics): RequestHandler {
  return async (_req, res) => {
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  };
}
