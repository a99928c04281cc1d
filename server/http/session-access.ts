import type { RequestHandler } from 'express';
import type { TimelineBus } from '../timeline/bus';
import { callerOf } from './auth';
import { sessionIdParam } from './params';
import { sessionNotFound } from './session-routes';

/**
 * With auth on, a session belongs to one caller: the one who started its run (stored with the
 * run), or, before that, the one who opened its stream first. Any other caller is told it
 * does not exist: a session id is not a credential. Only starting a run or opening a stream
 * binds; reading the history or cancelling never does, so a stranger's request (even one
 * answered 404) cannot take a session. With auth off (`caller` is `null`), nothing is bound.
 */
export async function bindSessionAccess(bus: TimelineBus, sessionId: string, caller: string | null): Promise<void> {
  if (caller === null) return;
  if (!(await bus.bindCaller(sessionId, caller))) throw sessionNotFound(sessionId);
}

/** `bindSessionAccess` for the stream route: the first stream of a session not yet run binds it. */
export function bindingSessionAccess(bus: TimelineBus): RequestHandler {
  return async (req, res, next) => {
    await bindSessionAccess(bus, sessionIdParam(req), callerOf(res));
    next();
  };
}

/** For history and cancel: only the caller the session's run belongs to gets past; nothing is bound. */
export function runOwnerAccess(bus: TimelineBus): RequestHandler {
  return async (req, res, next) => {
    const caller = callerOf(res);
    if (caller !== null) {
      const sessionId = sessionIdParam(req);
      const owner = await bus.runCaller(sessionId);
      if (owner !== null && owner !== caller) throw sessionNotFound(sessionId);
    }
    next();
  };
}
