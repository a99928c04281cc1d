import type { Request } from 'express';
import { UUID_PATTERN } from '../contract/wire-schemas';
import { isEventId } from '../timeline/event-id';
import { HttpError } from './errors';

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}

/** A canonical UUID, lower-cased; anything else never reaches the bus. */
export function sessionIdParam(req: Request): string {
  const value = req.params.sessionId;
  if (!isUuid(value)) {
    throw new HttpError('invalid_session_id', 'Session id must be a UUID (8-4-4-4-12 hex digits)');
  }
  return value.toLowerCase();
}

/** `Last-Event-ID` header, or `?lastEventId=` for clients that cannot set headers. */
export function lastEventIdParam(req: Request): string | null {
  const header = req.get('last-event-id');
  const query = req.query.lastEventId;
  const raw = header !== undefined && header !== '' ? header : typeof query === 'string' ? query : undefined;
  if (raw === undefined || raw === '') {
    if (Array.isArray(query)) throw invalidLastEventId();
    return null;
  }
  // Spaces and tabs only: a CR or LF must never be taken for an id (it would end an SSE field).
  const value = raw.replace(/^[ \t]+|[ \t]+$/g, '');
  if (!isEventId(value)) throw invalidLastEventId();
  return value;
}

function invalidLastEventId(): HttpError {
  return new HttpError('invalid_last_event_id', 'Last-Event-ID must be an event id like 1732212345678-0');
}
