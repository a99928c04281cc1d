import { ERROR_CODES } from './error-codes';
import { componentSchemas, inlineSchema, schemaRef, type JsonSchema, type SchemaName } from './json-schemas';
import { eventIdSchema } from './wire-schemas';

/**
 * docs/asyncapi.yaml (AsyncAPI 3.0): the events of `GET /timeline/stream/:sessionId`, built
 * from the wire schemas. `npm run docs` writes it, and a test fails when the committed file
 * differs from this. The SSE fields of each frame (`event:`, `id:`, a comment) are described
 * as the message's headers.
 */

/** The payloads of the stream and what they are made of; the HTTP bodies are docs/openapi.yaml's. */
const STREAM_SCHEMAS: SchemaName[] = [
  'TimelineEventType',
  'TimelineEventStatus',
  'SessionStatus',
  'RunOutcome',
  'TimelineEvent',
  'ReadyPayload',
  'DonePayload',
  'GapPayload',
  'ExpiredPayload',
];

const eventId = (): JsonSchema => inlineSchema(eventIdSchema, 'draft-07');

/** The SSE fields of a named event: `event: <name>`, and an `id:` only where a client resumes after it. */
function namedFields(name: string, withId: boolean): JsonSchema {
  return {
    type: 'object',
    description: `SSE fields: \`event: ${name}\`${withId ? ' and `id:`' : ', no `id:`'}.`,
    properties: { event: { const: name }, ...(withId && { id: eventId() }) },
    required: withId ? ['event', 'id'] : ['event'],
    additionalProperties: false,
  };
}

const MESSAGES: Record<string, JsonSchema> = {
  ready: {
    name: 'ready',
    title: 'Ready',
    summary: 'First event of every stream, preceded by `retry: <RETRY_MS>` in the same frame.',
    description:
      'Sent once the instance is subscribed to the session: a client that starts the run after `ready` cannot miss an event. ' +
      '`status` is the session status at that moment (`waiting` until a run starts).',
    headers: namedFields('ready', false),
    payload: schemaRef('ReadyPayload'),
  },
  timelineEvent: {
    name: 'message',
    title: 'Timeline event',
    summary: 'One workflow step: a default (unnamed) SSE message whose `id:` is its `event_id`.',
    description:
      "Replayed (every retained event after the requested position) and then live, in the session's order: " +
      'ids increase, `seq` is contiguous from 1, never a duplicate. Resume with `Last-Event-ID` (or `?lastEventId=`) set to the last id seen.',
    headers: {
      type: 'object',
      description: 'SSE fields: `id:` (the `event_id`), no `event:`.',
      properties: { id: eventId() },
      required: ['id'],
      additionalProperties: false,
    },
    payload: schemaRef('TimelineEvent'),
  },
  done: {
    name: 'done',
    title: 'Done',
    summary: 'How the run ended; the last event of the stream, which then ends.',
    description:
      "Its `id:` is ordered after every event; a reconnect with it as `Last-Event-ID` gets `204 No Content`. It always comes: on success, error, cancel, and when the run's instance died (`run_lost`).",
    headers: namedFields('done', true),
    payload: schemaRef('DonePayload'),
  },
  gap: {
    name: 'gap',
    title: 'Gap',
    summary: 'Events between `after` and `first_available` are gone from the log; what is retained follows.',
    description:
      'Sent before the replay when the requested position (a `Last-Event-ID`, or the start) precedes the oldest retained event of a log that was trimmed (`MAX_EVENTS_PER_SESSION`), expired (`EVENT_TTL_S`) or partly lost (Redis restarted empty). Never a silent gap.',
    headers: namedFields('gap', false),
    payload: schemaRef('GapPayload'),
  },
  expired: {
    name: 'expired',
    title: 'Expired',
    summary: `${ERROR_CODES.idle_timeout.meaning} The stream then ends.`,
    description: 'Named `expired`, not `error`, which a browser EventSource confuses with its own error event. A reconnect waits again.',
    headers: namedFields('expired', false),
    payload: schemaRef('ExpiredPayload'),
  },
  keepAlive: {
    name: 'keep-alive',
    title: 'Keep-alive comment',
    summary: '`: ping`, a comment line sent every `KEEPALIVE_MS` while the stream is otherwise silent.',
    description: 'Not an event: an EventSource ignores it. It keeps proxies from closing an idle stream and lets a client tell a stalled stream from a quiet one.',
    headers: {
      type: 'object',
      description: 'The comment line `: ping`.',
      properties: { comment: { const: 'ping' } },
      required: ['comment'],
      additionalProperties: false,
    },
  },
};

export function asyncApiDocument(version: string): Record<string, unknown> {
  const names = Object.keys(MESSAGES);
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Timeline service stream',
      version,
      description:
        'The Server-Sent Events of `GET /timeline/stream/{sessionId}` (its HTTP side, with headers and errors, is docs/openapi.yaml; ' +
        'the rules of replay, resume and gaps are docs/protocol.md). Each frame is one message below.',
      license: { name: 'MIT' },
    },
    servers: {
      local: { host: 'localhost:3000', protocol: 'http', description: '`npm start` on the defaults.' },
    },
    defaultContentType: 'application/json',
    channels: {
      sessionStream: {
        address: '/timeline/stream/{sessionId}',
        title: "A session's stream",
        description:
          "`ready`, then the session's events (replay, then live), then `done`; `gap` where the log lost events, `expired` if no run starts in time, `: ping` while idle.",
        parameters: { sessionId: { description: 'The session id, a UUID the client makes (any case).' } },
        messages: Object.fromEntries(names.map((name) => [name, { $ref: `#/components/messages/${name}` }])),
      },
    },
    operations: {
      followSession: {
        action: 'receive',
        channel: { $ref: '#/channels/sessionStream' },
        summary: "A client follows a session's timeline.",
        messages: names.map((name) => ({ $ref: `#/channels/sessionStream/messages/${name}` })),
      },
    },
    components: {
      messages: MESSAGES,
      schemas: componentSchemas('draft-07', STREAM_SCHEMAS),
    },
  };
}
