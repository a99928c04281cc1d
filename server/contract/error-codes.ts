/**
 * Every error code the service emits, with the HTTP status it is answered with and what it
 * means. HTTP error responses, the `error` of a failed run's `done`, the `expired` payload and
 * the documentation (docs/protocol.md, docs/openapi.yaml, docs/asyncapi.yaml) all take their
 * codes from here; the type of a code is a key of this table.
 */

/** Where a client meets a code. */
export type ErrorChannel =
  /** The JSON error body of an HTTP response: `{"error": {"code", "message"}}`. */
  | 'http'
  /** `done.error.code` of a failed run (stream, history). */
  | 'done'
  /** `code` of the stream's `event: expired`. */
  | 'expired';

export interface ErrorCodeSpec {
  /** The HTTP status of a response with this code; `null`: never the code of an HTTP response. */
  readonly status: number | null;
  readonly channels: readonly ErrorChannel[];
  /**
   * For a code that only a failed run's `done` carries: the code a held synchronous
   * `POST /execute` of that run answers with instead.
   */
  readonly execute?: string;
  /** What happened, and what the client may do about it. */
  readonly meaning: string;
}

export const ERROR_CODES = {
  invalid_request: {
    status: 400,
    channels: ['http'],
    meaning:
      'The request body failed validation (the message names the field), is not a JSON object, names an unknown workflow or has invalid `params`, or could not be read.',
  },
  bad_request: {
    status: 400,
    channels: ['http'],
    meaning: "The request is not valid HTTP/1.1 (refused by Node's HTTP parser before any route).",
  },
  invalid_json: { status: 400, channels: ['http'], meaning: 'The request body is not valid JSON.' },
  invalid_session_id: {
    status: 400,
    channels: ['http'],
    meaning: 'The session id in the path is not a canonical UUID (8-4-4-4-12 hex digits, any case).',
  },
  invalid_last_event_id: {
    status: 400,
    channels: ['http'],
    meaning: '`Last-Event-ID` (or `?lastEventId=`) is not an event id of the shape `<ms>-<n>`.',
  },
  unauthorized: {
    status: 401,
    channels: ['http'],
    meaning:
      'Auth is on (`API_KEY` / `JWT_SECRET`) and the bearer credential is missing or invalid. The answer is the same whatever was wrong, with `WWW-Authenticate: Bearer`.',
  },
  origin_not_allowed: {
    status: 403,
    channels: ['http'],
    meaning:
      'A browser sent this state-changing POST from another site (`Sec-Fetch-Site`, or an `Origin` that is not this host) and that origin is not in `CORS_ORIGINS`.',
  },
  not_found: { status: 404, channels: ['http'], meaning: 'No route has this path (or the demo page is not built).' },
  session_not_found: {
    status: 404,
    channels: ['http'],
    meaning:
      'No run was ever started for the session (a stream that only waited does not count), or, with auth on, the session belongs to another caller.',
  },
  method_not_allowed: {
    status: 405,
    channels: ['http'],
    meaning: 'The path exists but not with this method; the `Allow` header lists the one it takes.',
  },
  request_timeout: {
    status: 408,
    channels: ['http'],
    meaning: "The request's headers or body did not arrive within Node's request timeout.",
  },
  session_conflict: {
    status: 409,
    channels: ['http'],
    meaning: 'The session is already running or has finished: a session runs once. The body carries `session_id`.',
  },
  session_finished: {
    status: 409,
    channels: ['http'],
    meaning: 'Cancel of a session whose run has already finished.',
  },
  payload_too_large: { status: 413, channels: ['http'], meaning: 'The request body is larger than `BODY_LIMIT`.' },
  unsupported_encoding: {
    status: 415,
    channels: ['http'],
    meaning: 'The request body has a `Content-Encoding` or charset the service cannot read.',
  },
  unsupported_media_type: {
    status: 415,
    channels: ['http'],
    meaning:
      'A POST without `Content-Type: application/json`. JSON only, so that a browser must preflight every cross-site POST (an HTML form cannot send JSON).',
  },
  headers_too_large: {
    status: 431,
    channels: ['http'],
    meaning: "The request's headers are larger than Node's limit (16 KiB by default); answered by the HTTP parser before any route.",
  },
  too_many_caller_runs: {
    status: 429,
    channels: ['http'],
    meaning:
      'This caller (API key, JWT subject, or client address with auth off) already has `MAX_RUNS_PER_CALLER` runs going on this instance; retry after `Retry-After`.',
  },
  event_too_large: {
    status: 413,
    channels: ['http', 'done'],
    meaning:
      'An event is larger than `MAX_EVENT_BYTES`: `POST /execute` refuses a query whose `WORKFLOW_START` would be; a run whose workflow emits one fails with it (and a held synchronous `POST /execute` answers it).',
  },
  internal_error: {
    status: 500,
    channels: ['http', 'done'],
    meaning:
      'An unexpected failure (a bug, or a workflow that threw something other than a model error); its details are logged, never sent.',
  },
  workflow_failed: {
    status: 502,
    channels: ['http'],
    meaning:
      'A held synchronous `POST /execute` whose run failed because of the model provider; the run\'s `done.error.code` is the `model_*` code that says why. The body carries `session_id`.',
  },
  publish_backlog_full: {
    status: 503,
    channels: ['http', 'done'],
    meaning:
      "This instance holds `MAX_PUBLISH_BACKLOG_BYTES` of events on their way to the bus: new runs are refused (retry after `Retry-After`); a run whose event does not fit fails with it.",
  },
  not_ready: { status: 503, channels: ['http'], meaning: '`GET /readyz`: the bus (Redis) cannot be reached.' },
  bus_unavailable: {
    status: 503,
    channels: ['http', 'done'],
    meaning:
      'The bus (Redis) is unreachable: a new stream, run or cancel can be retried after `Retry-After`. As `done.error.code`: the run stayed cut off from the bus longer than `BUS_OUTAGE_MS`.',
  },
  too_many_streams: {
    status: 503,
    channels: ['http'],
    meaning: 'This instance has `MAX_STREAMS` open streams; retry after `Retry-After` (another instance may take it).',
  },
  too_many_runs: {
    status: 503,
    channels: ['http'],
    meaning: 'This instance runs `MAX_RUNS` workflows already; retry after `Retry-After`.',
  },
  shutting_down: {
    status: 503,
    channels: ['http'],
    meaning: 'This instance is shutting down and takes no new work (`/healthz` still answers); retry on another instance.',
  },
  shutdown: {
    status: 503,
    channels: ['http', 'done'],
    meaning:
      'The instance shut down before the run finished, after `SHUTDOWN_GRACE_MS` (as `done.error.code`, and the answer of a held synchronous `POST /execute`).',
  },
  run_timeout: {
    status: 504,
    channels: ['http', 'done'],
    meaning:
      'The run was still going after `MAX_RUN_DURATION_MS` and was aborted (as `done.error.code`, and the answer of a held synchronous `POST /execute`).',
  },
  run_lost: {
    status: null,
    channels: ['done'],
    execute: 'internal_error',
    meaning:
      'The instance running the workflow died or lost Redis for longer than `RUN_LEASE_MS`; another instance ended the run.',
  },
  model_auth_failed: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'The model provider answered 401 / 403: the key is wrong, revoked or not allowed this model.',
  },
  model_rate_limited: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: "The model provider's rate limit (429 after the retries, or a `rate_limit_error` event mid-stream).",
  },
  model_overloaded: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'The model provider is overloaded (529 after the retries, or an `overloaded_error` event mid-stream).',
  },
  model_unavailable: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'The model provider failed with another 5xx after the retries.',
  },
  model_bad_request: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'The model provider refused the request (400 / 404 / 413 / 422; often a wrong `ANTHROPIC_MODEL`).',
  },
  model_stream_error: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'Another `error` event mid-stream, or a model stream that could not be read.',
  },
  model_connection_lost: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'No connection to the model provider after the retries, or its stream broke off before the end.',
  },
  model_timeout: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'No response head from the model provider within 60 s (per try), or 60 s without a stream event.',
  },
  model_error: {
    status: null,
    channels: ['done'],
    execute: 'workflow_failed',
    meaning: 'Any other error answer from the model provider.',
  },
  idle_timeout: {
    status: null,
    channels: ['expired'],
    meaning: 'No run started for the session within `STREAM_IDLE_TIMEOUT_MS`: the stream sent `event: expired` and ended.',
  },
} as const satisfies Record<string, ErrorCodeSpec>;

type Table = typeof ERROR_CODES;

export type ErrorCode = keyof Table;

/** Codes an HTTP error response can carry. */
export type HttpErrorCode = { [C in ErrorCode]: Table[C]['status'] extends number ? C : never }[ErrorCode];

/** Codes the `error` of a failed run's `done` can carry. */
export type DoneErrorCode = { [C in ErrorCode]: 'done' extends Table[C]['channels'][number] ? C : never }[ErrorCode];

/** Why a model call failed (`ModelError.code`). */
export type ModelErrorCode = Extract<ErrorCode, `model_${string}`>;

/** Every code, in table order; with a channel, only the codes it carries. */
export const errorCodes = (channel?: ErrorChannel): ErrorCode[] =>
  (Object.keys(ERROR_CODES) as ErrorCode[]).filter(
    (code) => channel === undefined || (ERROR_CODES[code].channels as readonly ErrorChannel[]).includes(channel),
  );

/** The HTTP status of an HTTP error code. */
export const statusOf = (code: HttpErrorCode): number => ERROR_CODES[code].status;

/**
 * What a held synchronous `POST /execute` answers for a run that failed with `code`: the code
 * itself where it is an HTTP code, else the one the table names (`run_lost` → `internal_error`,
 * `model_*` → `workflow_failed`).
 */
export function executeFailure(code: DoneErrorCode): { status: number; code: HttpErrorCode } {
  const spec: ErrorCodeSpec = ERROR_CODES[code];
  const answered = (spec.status === null ? spec.execute : code) as HttpErrorCode;
  return { status: statusOf(answered), code: answered };
}
