/**
 * The wire model of the timeline: one source of truth shared by the server (which imports
 * these types) and the client SDK (which must never import the server).
 */

export const TIMELINE_EVENT_TYPES = [
  'WORKFLOW_START',
  'ROUTER_THOUGHT',
  'AGENT_START',
  'AGENT_TOKEN',
  'AGENT_MESSAGE',
  'TOOL_CALL',
  'AGENT_COMPLETE',
  'WORKFLOW_COMPLETE',
  'WORKFLOW_ERROR',
  'WORKFLOW_CANCELLED',
] as const;

export type TimelineEventType = (typeof TIMELINE_EVENT_TYPES)[number];

export type TimelineEventStatus = 'IN_PROGRESS' | 'SUCCESS' | 'ERROR';

/** One workflow step, sent as a default (unnamed) SSE message whose `id` is `event_id`. */
export interface TimelineEvent {
  /** Same string as the SSE id: `<ms>-<n>`, ordered within a session, otherwise opaque. */
  event_id: string;
  session_id: string;
  /** 1-based, contiguous within the session. */
  seq: number;
  type: TimelineEventType;
  status: TimelineEventStatus;
  message: string;
  agent_name?: string;
  details?: Record<string, unknown>;
  /** ISO 8601. */
  timestamp: string;
}

export type SessionStatus = 'waiting' | 'running' | 'completed' | 'failed' | 'cancelled';

export type RunOutcome = 'completed' | 'failed' | 'cancelled';

export interface ErrorInfo {
  code: string;
  message: string;
}

/** Payload of the terminal `event: done`. It is not a TimelineEvent. */
export interface DonePayload {
  status: RunOutcome;
  result?: unknown;
  error?: ErrorInfo;
}

/** `done` as history returns it: the payload plus its own id, ordered after every event. */
export interface DoneRecord extends DonePayload {
  id: string;
}

/** Payload of `event: ready`, the first event of every stream. */
export interface ReadyPayload {
  session_id: string;
  status: SessionStatus;
}

/** Payload of `event: gap`: events after `after` and before `first_available` are gone. */
export interface GapPayload {
  after: string | null;
  first_available: string | null;
}

/** Payload of `event: expired`: the session never started within the idle timeout. */
export interface ExpiredPayload {
  code: 'idle_timeout';
}

/** `GET /timeline/:sessionId` */
export interface SessionHistory {
  session_id: string;
  status: SessionStatus;
  events: TimelineEvent[];
  done: DoneRecord | null;
}

/** Body of `POST /execute`. */
export interface ExecuteRequest {
  project_id: string;
  query: string;
  context?: Array<{ type: string; id: string; [key: string]: unknown }>;
  session_id?: string;
  workflow?: string;
  params?: Record<string, unknown>;
}

/** `200` answer of a synchronous `POST /execute`. */
export interface ExecuteResult {
  session_id: string;
  status: RunOutcome;
  result: unknown;
  event_count: number;
  duration_ms: number;
}

/** `202` answer of `POST /execute` with `Prefer: respond-async`. */
export interface ExecuteAccepted {
  session_id: string;
  stream_url: string;
}

/** Every error body of the HTTP API. */
export interface ErrorBody {
  error: ErrorInfo;
  session_id?: string;
}
