import type { RequestHandler } from 'express';
import type { DonePayload, SessionHistory, TimelineEvent } from '../../client-sdk/src/types';
import type { TimelineBus } from '../timeline/bus';
import { HttpError } from './errors';
import { sessionIdParam } from './params';

/** Also what another caller's session answers: its existence is not leaked. */
export function sessionNotFound(sessionId: string): HttpError {
  return new HttpError(404, 'session_not_found', `No run was started for session ${sessionId}`);
}

/** `GET /timeline/:sessionId`: the retained history as JSON, `done` apart from the events. */
export function historyRoute(bus: TimelineBus): RequestHandler {
  return async (req, res) => {
    const sessionId = sessionIdParam(req);
    const slice = await bus.read(sessionId, null);
    if (slice.status === 'waiting') throw sessionNotFound(sessionId);
    const history: SessionHistory = { session_id: sessionId, status: slice.status, events: [], done: null };
    for (const entry of slice.entries) {
      if (entry.kind === 'event') history.events.push(JSON.parse(entry.data) as TimelineEvent);
      else history.done = { id: entry.id, ...(JSON.parse(entry.data) as DonePayload) };
    }
    res.json(history);
  };
}

/** `POST /timeline/:sessionId/cancel`: reaches the owning instance through the bus. */
export function cancelRoute(bus: TimelineBus): RequestHandler {
  return async (req, res) => {
    const sessionId = sessionIdParam(req);
    const outcome = await bus.requestCancel(sessionId);
    if (outcome === 'not_found') throw sessionNotFound(sessionId);
    if (outcome === 'finished') {
      throw new HttpError(409, 'session_finished', `Session ${sessionId} has already finished`);
    }
    res.status(202).json({ session_id: sessionId, status: 'cancelling' });
  };
}
