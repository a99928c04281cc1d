import { ERROR_CODES, statusOf, type HttpErrorCode } from './error-codes';
import { componentSchemas, inlineSchema, schemaRef, type JsonSchema } from './json-schemas';
import { eventIdSchema, healthSchema, readinessSchema, sessionIdSchema } from './wire-schemas';

/**
 * docs/openapi.yaml (OpenAPI 3.1), built from the wire schemas and the error table:
 * `npm run docs` writes it, and a test fails when the committed file differs from this.
 */

type Operation = Record<string, unknown>;

/** The error answers of one operation. */
interface Errors {
  codes: HttpErrorCode[];
  /** Codes that always carry `Retry-After` here; a status whose codes all do declares it required. */
  retryAfter?: HttpErrorCode[];
}

const json = (schema: JsonSchema) => ({ 'application/json': { schema } });

const RETRY_AFTER: JsonSchema = {
  description: 'Seconds to wait before retrying.',
  schema: { type: 'string', pattern: '^[0-9]+$' },
};

/** The error responses of `errors`, one per status, each listing its codes as an enum of the body's `code`. */
function errorResponses({ codes, retryAfter = [] }: Errors): Record<string, JsonSchema> {
  const byStatus = new Map<number, HttpErrorCode[]>();
  for (const code of codes) byStatus.set(statusOf(code), [...(byStatus.get(statusOf(code)) ?? []), code]);
  const responses: Record<string, JsonSchema> = {};
  for (const [status, group] of [...byStatus].sort(([a], [b]) => a - b)) {
    const headers: Record<string, JsonSchema> = {};
    const retrying = group.filter((code) => retryAfter.includes(code));
    if (retrying.length > 0) {
      headers['Retry-After'] = { ...RETRY_AFTER, required: retrying.length === group.length };
    }
    if (group.includes('unauthorized')) {
      headers['WWW-Authenticate'] = { required: true, schema: { const: 'Bearer' } };
    }
    responses[String(status)] = {
      description: group.map((code) => `\`${code}\`: ${ERROR_CODES[code].meaning}`).join('\n\n'),
      ...(Object.keys(headers).length > 0 && { headers }),
      content: json({
        allOf: [schemaRef('ErrorBody'), { properties: { error: { properties: { code: { enum: group } } } } }],
      }),
    };
  }
  return responses;
}

const SESSION_ID_PARAM = { $ref: '#/components/parameters/sessionId' };
const PROTECTED = [{}, { bearerAuth: [] }];
const OPEN: unknown[] = [];

/**
 * Answers Node's HTTP parser gives before any route sees the request (a malformed request,
 * headers over the limit, a request that does not arrive in time): possible on every path.
 */
const PARSER_ERRORS: HttpErrorCode[] = ['bad_request', 'request_timeout', 'headers_too_large'];

/** Answers any route may give: a credential refused (auth on), a draining instance, a bug. */
const PROTECTED_ERRORS: HttpErrorCode[] = ['unauthorized', 'internal_error', 'shutting_down', ...PARSER_ERRORS];

/** Answers every state-changing `POST` may give (see server/http/cross-site.ts). */
const POST_ERRORS: HttpErrorCode[] = ['unsupported_media_type', 'origin_not_allowed'];

function streamOperation(): Operation {
  return {
    operationId: 'streamSession',
    tags: ['stream'],
    summary: "The session's timeline over Server-Sent Events",
    description:
      'Open it **before** `POST /execute`. The body is a `text/event-stream`: `retry:` and `event: ready` first ' +
      '(sent once the instance is subscribed), then every retained event of the session after the requested ' +
      'position (replay), then live events, then `event: done`, after which the response ends. ' +
      'Its events are described in docs/asyncapi.yaml and docs/protocol.md.',
    security: [{}, { bearerAuth: [] }, { accessToken: [] }],
    parameters: [
      SESSION_ID_PARAM,
      {
        name: 'Last-Event-ID',
        in: 'header',
        description: 'Resume: only what comes after this id. A `done` id answers `204`.',
        schema: inlineSchema(eventIdSchema, 'draft-2020-12'),
      },
      {
        name: 'lastEventId',
        in: 'query',
        description: '`Last-Event-ID` for clients that cannot set headers (the header wins when both are sent).',
        schema: inlineSchema(eventIdSchema, 'draft-2020-12'),
      },
    ],
    responses: {
      200: {
        description: 'The stream. Headers are flushed at once; nothing on the way may buffer or compress it.',
        headers: {
          'Cache-Control': { required: true, schema: { const: 'no-cache, no-transform' } },
          'X-Accel-Buffering': { required: true, schema: { const: 'no' } },
        },
        content: {
          'text/event-stream': {
            schema: { type: 'string', description: 'SSE frames: see docs/asyncapi.yaml.' },
          },
        },
      },
      204: {
        description:
          "`Last-Event-ID` is the session's `done` id: everything was delivered. 204 is how the SSE spec stops an EventSource from reconnecting.",
      },
      ...errorResponses({
        codes: ['invalid_session_id', 'invalid_last_event_id', 'session_not_found', 'too_many_streams', 'bus_unavailable', ...PROTECTED_ERRORS],
        retryAfter: ['too_many_streams', 'bus_unavailable', 'shutting_down'],
      }),
    },
  };
}

function executeOperation(): Operation {
  return {
    operationId: 'execute',
    tags: ['runs'],
    summary: 'Start a workflow run on a session',
    description:
      'The body is JSON, sent as `Content-Type: application/json` (anything else is `415`, so that a browser ' +
      'preflights every cross-site call). Without `Prefer: respond-async` the answer comes ' +
      'when the run ends (`200`, or the error the run failed with); the run goes on if the client leaves. ' +
      'With it, `202` at once.',
    security: PROTECTED,
    parameters: [
      {
        name: 'Prefer',
        in: 'header',
        description: '`respond-async`: answer `202` at once instead of when the run ends.',
        schema: { type: 'string' },
        example: 'respond-async',
      },
    ],
    requestBody: { required: true, content: json(schemaRef('ExecuteRequest')) },
    responses: {
      200: {
        description: 'The run ended: `completed`, or `cancelled` (a cancelled run is not an error).',
        content: json(schemaRef('ExecuteResult')),
      },
      202: {
        description: 'Started (`Prefer: respond-async`); follow it on `stream_url`.',
        headers: { 'Preference-Applied': { required: true, schema: { const: 'respond-async' } } },
        content: json(schemaRef('ExecuteAccepted')),
      },
      ...errorResponses({
        codes: [
          'invalid_request',
          'invalid_json',
          'session_not_found',
          'session_conflict',
          'payload_too_large',
          'unsupported_encoding',
          'workflow_failed',
          'too_many_runs',
          'too_many_caller_runs',
          'event_too_large',
          'publish_backlog_full',
          'run_timeout',
          'bus_unavailable',
          'shutdown',
          ...POST_ERRORS,
          ...PROTECTED_ERRORS,
        ],
        retryAfter: ['too_many_runs', 'too_many_caller_runs', 'shutting_down'],
      }),
    },
  };
}

function historyOperation(): Operation {
  return {
    operationId: 'getHistory',
    tags: ['sessions'],
    summary: "The session's retained history as JSON",
    security: PROTECTED,
    parameters: [SESSION_ID_PARAM],
    responses: {
      200: { description: 'Events in order; `done` apart, with its id, once the run ended.', content: json(schemaRef('SessionHistory')) },
      ...errorResponses({
        codes: ['invalid_session_id', 'session_not_found', 'bus_unavailable', ...PROTECTED_ERRORS],
        retryAfter: ['bus_unavailable', 'shutting_down'],
      }),
    },
  };
}

function cancelOperation(): Operation {
  return {
    operationId: 'cancelSession',
    tags: ['sessions'],
    summary: 'Cancel a running session, from any instance',
    security: PROTECTED,
    parameters: [SESSION_ID_PARAM],
    responses: {
      202: { description: "The run's signal fires where it runs; its `done` will be `cancelled`.", content: json(schemaRef('CancelAccepted')) },
      ...errorResponses({
        codes: ['invalid_session_id', 'session_not_found', 'session_finished', 'bus_unavailable', ...POST_ERRORS, ...PROTECTED_ERRORS],
        retryAfter: ['bus_unavailable', 'shutting_down'],
      }),
    },
  };
}

function probe(operationId: string, summary: string, ok: JsonSchema, errors: Errors | null): Operation {
  return {
    operationId,
    tags: ['operations'],
    summary,
    security: OPEN,
    responses: { 200: ok, ...(errors && errorResponses(errors)) },
  };
}

function demoOperation(operationId: string, summary: string, content: Record<string, JsonSchema>, parameters: unknown[] = []): Operation {
  return {
    operationId,
    tags: ['demo'],
    summary,
    security: OPEN,
    ...(parameters.length > 0 && { parameters }),
    responses: {
      200: { description: 'The file.', content },
      ...errorResponses({ codes: ['not_found', 'shutting_down', ...PARSER_ERRORS], retryAfter: ['shutting_down'] }),
    },
  };
}

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Timeline service',
      version,
      summary: 'Runs AI agent workflows and streams their progress over Server-Sent Events, across instances.',
      description:
        'The protocol (event model, ordering, resume, gaps, limits, configuration) is docs/protocol.md; the ' +
        "stream's events are docs/asyncapi.yaml. Every error body is `{\"error\": {\"code\", \"message\"}}` " +
        '(never HTML, never a stack trace). Auth is off unless `API_KEY` or `JWT_SECRET` is set.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: 'http://localhost:3000', description: '`npm start` on the defaults' }],
    tags: [
      { name: 'runs', description: 'Starting workflow runs.' },
      { name: 'stream', description: 'Following a session live.' },
      { name: 'sessions', description: 'History and cancel.' },
      { name: 'operations', description: 'Probes and metrics; open without credentials.' },
      { name: 'demo', description: 'The demo web page; open without credentials.' },
    ],
    paths: {
      '/execute': { post: executeOperation() },
      '/timeline/stream/{sessionId}': { get: streamOperation() },
      '/timeline/{sessionId}': { get: historyOperation() },
      '/timeline/{sessionId}/cancel': { post: cancelOperation() },
      '/healthz': {
        get: probe(
          'healthz',
          'The process is alive',
          { description: 'Alive.', content: json(inlineSchema(healthSchema, 'draft-2020-12')) },
          { codes: PARSER_ERRORS },
        ),
      },
      '/readyz': {
        get: probe(
          'readyz',
          'The bus (Redis) can be reached',
          { description: 'Ready.', content: json(inlineSchema(readinessSchema, 'draft-2020-12')) },
          { codes: ['not_ready', 'shutting_down', ...PARSER_ERRORS], retryAfter: ['shutting_down'] },
        ),
      },
      '/metrics': {
        get: probe(
          'metrics',
          'Prometheus metrics of this instance',
          { description: 'Prometheus text exposition.', content: { 'text/plain': { schema: { type: 'string' } } } },
          { codes: ['internal_error', 'shutting_down', ...PARSER_ERRORS], retryAfter: ['shutting_down'] },
        ),
      },
      '/': { get: demoOperation('demoPage', 'The demo page: a live timeline built on the client SDK', { 'text/html': { schema: { type: 'string' } } }) },
      '/assets/{file}': {
        get: demoOperation(
          'demoAsset',
          "The demo page's script and stylesheet",
          { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } }, 'application/json': { schema: { type: 'string' } } },
          [{ name: 'file', in: 'path', required: true, schema: { enum: ['main.js', 'main.js.map', 'styles.css'] } }],
        ),
      },
    },
    components: {
      schemas: componentSchemas('draft-2020-12'),
      parameters: {
        sessionId: {
          name: 'sessionId',
          in: 'path',
          required: true,
          description: 'The session, a UUID the client makes (any case; compared in lower case).',
          schema: inlineSchema(sessionIdSchema, 'draft-2020-12'),
        },
      },
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'With `API_KEY` set: that key. With `JWT_SECRET` set: an HS256 JWT with `exp` and a string `sub` (the caller, who then owns the sessions it touches first).',
        },
        accessToken: {
          type: 'apiKey',
          in: 'query',
          name: 'access_token',
          description: 'The stream route only, for a browser EventSource (which cannot send headers); never logged.',
        },
      },
    },
  };
}
