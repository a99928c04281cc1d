import type { RequestHandler } from 'express';
import type { DonePayload, SessionHistory, TimelineEvent } from '../../client-sdk/src/types';
import { READ_PAGE_SIZE, type TimelineBus } from '../timeline/bus';
import { HttpError } from './errors';
import { sessionIdParam } from './params';

/** Also what another caller's session answers: its existence is not leaked. */
export function sessionNotFound(sessionId: string): HttpError {
  return new HttpError('session_not_found', `No run was started for session ${sessionId}`);
}

/**
 * `GET /timeline/:sessionId`: the retained history as JSON, `done` apart from the events.
 * Read a page at a time, so Redis never builds one reply of a whole capped log.
 */
export function historyRoute(bus: TimelineBus): RequestHandler {
  return async (req, res) => {
    const sessionId = sessionIdParam(req);
    const history: SessionHistory = { session_id: sessionId, status: 'waiting', events: [], done: null };
    let afterId: string | null = null;
    for (;;) {
      const page = await bus.read(sessionId, afterId, READ_PAGE_SIZE);
      if (page.status === 'waiting') throw sessionNotFound(sessionId);
      // The cap trimmed the events of earlier pages meanwhile: the history is what is retained now.
      if (page.gap && afterId !== null) history.events = [];
      // The last page's status was read with the log's end, so it agrees with `done`.
      history.status = page.status;
      for (const entry of page.entries) {
        if (entry.kind === 'event') history.events.push(JSON.parse(entry.data) as TimelineEvent);
        else history.done = { id: entry.id, ...(JSON.parse(entry.data) as DonePayload) };
      }
      const last = page.entries.at(-1);
      if (!page.more || last === undefined) break;
      afterId = last.id;
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
      throw new HttpError('session_finished', `Session ${sessionId} has already finished`);
    }
    res.status(202).json({ session_id: sessionId, status: 'cancelling' });
  };
}
