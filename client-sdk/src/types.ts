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

/**
 * The fields every timeline event has, whatever its type; `details` unchecked. It is what a
 * workflow may emit; {@link TimelineEvent} is what the service's own workflows do emit.
 */
export interface TimelineEventBase {
  /** Same string as the SSE id: `<ms>-<n>`, ordered within a session, otherwise opaque. */
  event_id: string;
  session_id: string;
  /** 1-based, contiguous within the session. */
  seq: number;
  type: TimelineEventType;
  status: TimelineEventStatus;
  /** A human-readable line for a timeline UI. */
  message: string;
  agent_name?: string;
  details?: object;
  /** ISO 8601. */
  timestamp: string;
}

/** Tokens one model call (or, summed, a whole run) used. */
export interface TokenUsage {
  input_tokens: number;
  output_tokens: number;
}

/** Who the `agents` workflow's router hands the query to. */
export type AgentRoute = 'writer' | 'researcher' | 'discussion';

/** `WORKFLOW_START`: the run's first event. */
export interface WorkflowStartDetails {
  workflow: string;
  project_id: string;
  query: string;
}

/** `ROUTER_THOUGHT`: the router's decision (`usage` is absent when `params.route` forced it). */
export interface RouterThoughtDetails {
  route: AgentRoute;
  reason: string;
  /** 0 to 1. */
  confidence: number;
  usage?: TokenUsage;
}

/** `AGENT_START`: `turn` is set for a speaker of a discussion (1-based). */
export interface AgentStartDetails {
  turn?: number;
}

/** `AGENT_TOKEN`: a piece of streamed model text (coalesced, not one event per token). */
export interface AgentTokenDetails {
  text: string;
  /** `text.length`. */
  chars: number;
}

/** `AGENT_MESSAGE` of a discussion: one speaker's full turn. */
export interface DiscussionTurnDetails {
  turn: number;
  text: string;
  usage: TokenUsage;
}

/** `AGENT_MESSAGE` of the `synthetic` workflow (load tests): tell them apart with `'i' in details`. */
export interface SyntheticMessageDetails {
  /** 1-based. */
  i: number;
  /** Epoch ms when the event was published. */
  sent_at: number;
  /** Monotonic ms (`process.hrtime`), comparable across processes on the service's host. */
  sent_mono_ms: number;
  /** `params.payload_bytes` characters. */
  pad: string;
}

/** `TOOL_CALL`: the researcher's search (the service has no search backend; see the README). */
export interface ToolCallDetails {
  tool: 'search';
  input: { query: string };
  output: string[];
}

/** `AGENT_COMPLETE`: the agent's whole answer. */
export interface AgentCompleteDetails {
  text: string;
  usage: TokenUsage;
}

/** `WORKFLOW_COMPLETE`: the workflow's result (also in `done.result`). */
export interface WorkflowCompleteDetails {
  result: unknown;
  duration_ms: number;
}

/** `WORKFLOW_ERROR`: the same error as the failed `done`. */
export interface WorkflowErrorDetails {
  error: RunError;
}

export interface WorkflowStartEvent extends TimelineEventBase {
  type: 'WORKFLOW_START';
  status: 'IN_PROGRESS';
  details: WorkflowStartDetails;
}

export interface RouterThoughtEvent extends TimelineEventBase {
  type: 'ROUTER_THOUGHT';
  details: RouterThoughtDetails;
}

export interface AgentStartEvent extends TimelineEventBase {
  type: 'AGENT_START';
  details?: AgentStartDetails;
}

export interface AgentTokenEvent extends TimelineEventBase {
  type: 'AGENT_TOKEN';
  details: AgentTokenDetails;
}

export interface AgentMessageEvent extends TimelineEventBase {
  type: 'AGENT_MESSAGE';
  details: DiscussionTurnDetails | SyntheticMessageDetails;
}

export interface ToolCallEvent extends TimelineEventBase {
  type: 'TOOL_CALL';
  details: ToolCallDetails;
}

export interface AgentCompleteEvent extends TimelineEventBase {
  type: 'AGENT_COMPLETE';
  details: AgentCompleteDetails;
}

export interface WorkflowCompleteEvent extends TimelineEventBase {
  type: 'WORKFLOW_COMPLETE';
  status: 'SUCCESS';
  details: WorkflowCompleteDetails;
}

export interface WorkflowErrorEvent extends TimelineEventBase {
  type: 'WORKFLOW_ERROR';
  status: 'ERROR';
  details: WorkflowErrorDetails;
}

export interface WorkflowCancelledEvent extends TimelineEventBase {
  type: 'WORKFLOW_CANCELLED';
  status: 'ERROR';
  details?: undefined;
}

/**
 * One workflow step, sent as a default (unnamed) SSE message whose `id` is `event_id`. A union
 * on `type`: `switch (event.type)` narrows `details` to that type's fields.
 */
export type TimelineEvent =
  | WorkflowStartEvent
  | RouterThoughtEvent
  | AgentStartEvent
  | AgentTokenEvent
  | AgentMessageEvent
  | ToolCallEvent
  | AgentCompleteEvent
  | WorkflowCompleteEvent
  | WorkflowErrorEvent
  | WorkflowCancelledEvent;

/** The event of one type, e.g. `TimelineEventOf<'AGENT_TOKEN'>`. */
export type TimelineEventOf<T extends TimelineEventType> = Extract<TimelineEvent, { type: T }>;

export type SessionStatus = 'waiting' | 'running' | 'completed' | 'failed' | 'cancelled';

export type RunOutcome = 'completed' | 'failed' | 'cancelled';

/** `error.code` of the HTTP API's error bodies (`{"error": {"code", "message"}}`). */
export type HttpErrorCode =
  | 'bad_request'
  | 'invalid_request'
  | 'invalid_json'
  | 'invalid_session_id'
  | 'invalid_last_event_id'
  | 'unauthorized'
  | 'origin_not_allowed'
  | 'not_found'
  | 'session_not_found'
  | 'method_not_allowed'
  | 'request_timeout'
  | 'session_conflict'
  | 'session_finished'
  | 'payload_too_large'
  | 'unsupported_encoding'
  | 'unsupported_media_type'
  | 'too_many_caller_runs'
  | 'headers_too_large'
  | 'event_too_large'
  | 'internal_error'
  | 'workflow_failed'
  | 'not_ready'
  | 'publish_backlog_full'
  | 'bus_unavailable'
  | 'too_many_streams'
  | 'too_many_runs'
  | 'shutting_down'
  | 'shutdown'
  | 'run_timeout';

/** `error.code` of a run failed by the model provider (the Anthropic API, when configured). */
export type ModelErrorCode =
  | 'model_auth_failed'
  | 'model_rate_limited'
  | 'model_overloaded'
  | 'model_unavailable'
  | 'model_bad_request'
  | 'model_stream_error'
  | 'model_connection_lost'
  | 'model_timeout'
  | 'model_error';

/** `error.code` of a failed run's `done` and `WORKFLOW_ERROR`. */
export type RunErrorCode =
  /** The instance running it died or lost Redis; another instance ended it. */
  | 'run_lost'
  /** The instance shut down before the run finished. */
  | 'shutdown'
  /** Redis stayed unreachable longer than `BUS_OUTAGE_MS`. */
  | 'bus_unavailable'
  /** The run went on longer than `MAX_RUN_DURATION_MS`. */
  | 'run_timeout'
  /** The workflow emitted an event larger than `MAX_EVENT_BYTES`. */
  | 'event_too_large'
  /** The instance had no room for the run's event on its way to the bus (`MAX_PUBLISH_BACKLOG_BYTES`). */
  | 'publish_backlog_full'
  | 'internal_error'
  | ModelErrorCode;

/** An error as the service sends it. `code` is open: a newer service may add codes. */
export interface ErrorInfo {
  code: HttpErrorCode | RunErrorCode | (string & {});
  message: string;
}

/** Why a run failed: `done.error` and `WORKFLOW_ERROR`'s `details.error`. */
export interface RunError extends ErrorInfo {
  code: RunErrorCode | (string & {});
}

/** `done` of a run that completed: `result` is the workflow's return value. */
export interface CompletedDone<R = unknown> {
  status: 'completed';
  result?: R;
  error?: undefined;
}

/** `done` of a run that failed: `error` says why. */
export interface FailedDone {
  status: 'failed';
  error: RunError;
  result?: undefined;
}

/** `done` of a run that was cancelled (`POST /timeline/:id/cancel`). */
export interface CancelledDone {
  status: 'cancelled';
  result?: undefined;
  error?: undefined;
}

/** Payload of the terminal `event: done`, a union on `status`. It is not a TimelineEvent. */
export type DonePayload<R = unknown> = CompletedDone<R> | FailedDone | CancelledDone;

/** `done` as history returns it: the payload plus its own id, ordered after every event. */
export type DoneRecord<R = unknown> = DonePayload<R> & { id: string };

/** Payload of `event: ready`, the first event of every stream. */
export interface ReadyPayload {
  session_id: string;
  /** `waiting`: no run was started on the session (yet), or its log is gone. */
  status: SessionStatus;
}

/**
 * Payload of `event: gap`: events after `after` (`null`: the start) and before
 * `first_available` are gone from the server's log (trimmed or expired).
 */
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
