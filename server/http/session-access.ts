import type { RequestHandler } from 'express';
import type { TimelineBus } from '../timeline/bus';
import { callerOf } from './auth';
import { sessionIdParam } from './params';
import { sessionNotFound } from './session-routes';

/**
 * With auth on, a session belongs to the caller that first touched it (a stream or a run,
 * bound atomically by the bus); any other caller is told it does not exist. A session id
 * is not a credential. With auth off (`caller` is `null`), nothing is bound.
 */
export async function assertSessionAccess(bus: TimelineBus, sessionId: string, caller: string | null): Promise<void> {
  if (caller === null) return;
  if (!(await bus.bindCaller(sessionId, caller))) throw sessionNotFound(sessionId);
}

/** `assertSessionAccess` for the routes whose path carries the session id. */
export function sessionAccess(bus: TimelineBus): RequestHandler {
  return async (req, res, next) => {
    await assertSessionAccess(bus, sessionIdParam(req), callerOf(res));
    next();
  };
}
