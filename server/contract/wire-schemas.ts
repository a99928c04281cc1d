import { z } from 'zod';
import {
  TIMELINE_EVENT_TYPES,
  type DonePayload,
  type DoneRecord,
  type ErrorBody,
  type ExecuteAccepted,
  type ExecuteRequest,
  type ExecuteResult,
  type ExpiredPayload,
  type GapPayload,
  type HttpErrorCode as SdkHttpErrorCode,
  type ModelErrorCode as SdkModelErrorCode,
  type ReadyPayload,
  type RunErrorCode as SdkRunErrorCode,
  type SessionHistory,
  type TimelineEventBase,
} from '../../client-sdk/src/types';
import type { StepDraft } from '../workflows/workflow';
import { EVENT_ID_PATTERN } from '../timeline/event-id';
import { errorCodes, type DoneErrorCode, type ErrorCode, type HttpErrorCode, type ModelErrorCode } from './error-codes';

/**
 * The wire format as zod schemas: request bodies, response bodies and stream payloads. The
 * server validates requests with them and the documentation (docs/openapi.yaml,
 * docs/asyncapi.yaml) is generated from them; the checks at the end keep them equal to the
 * TypeScript types the server and the client SDK use.
 */

/** A canonical UUID (8-4-4-4-12 hex digits, any case). */
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const sessionIdSchema = z
  .string()
  .regex(UUID_PATTERN, 'must be a UUID')
  .meta({ description: 'A canonical UUID (8-4-4-4-12 hex digits, any case); compared and stored in lower case.' });

export const eventIdSchema = z
  .string()
  .regex(EVENT_ID_PATTERN)
  .meta({
    description:
      'An event id, `<ms>-<n>` (the Redis Stream id shape under every bus): ordered within a session, otherwise opaque.',
    examples: ['1732212345678-0'],
  });

export const timelineEventTypeSchema = z.enum(TIMELINE_EVENT_TYPES);
export const timelineEventStatusSchema = z.enum(['IN_PROGRESS', 'SUCCESS', 'ERROR']);
export const sessionStatusSchema = z
  .enum(['waiting', 'running', 'completed', 'failed', 'cancelled'])
  .meta({ description: '`waiting`: no run was started for the session (yet).' });
export const runOutcomeSchema = z.enum(['completed', 'failed', 'cancelled']);

const enumOf = <C extends ErrorCode>(codes: C[]) => z.enum(codes as [C, ...C[]]);

export const timelineEventSchema = z
  .strictObject({
    event_id: eventIdSchema,
    session_id: sessionIdSchema,
    seq: z.int().min(1).meta({ description: '1-based, contiguous within the session.' }),
    type: timelineEventTypeSchema,
    status: timelineEventStatusSchema,
    message: z.string().meta({ description: 'A human-readable line for a timeline UI.' }),
    agent_name: z.string().optional(),
    details: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ description: "Type-specific details (the built-in workflows' are typed by the client SDK's `TimelineEvent` union)." }),
    timestamp: z.iso.datetime().meta({ description: 'When the step was published (ISO 8601, UTC).' }),
  })
  .meta({ description: 'One workflow step: a default (unnamed) SSE message whose `id` is `event_id`.' });

/** A step as a workflow emits it (`ctx.emit`); the run adds `event_id`, `session_id`, `seq` and `timestamp`. */
export const stepDraftSchema = z.strictObject({
  type: timelineEventTypeSchema,
  status: timelineEventStatusSchema,
  message: z.string(),
  agent_name: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const doneErrorSchema = z.strictObject({
  code: enumOf(errorCodes('done')),
  message: z.string(),
});

const completedDone = {
  status: z.literal('completed'),
  result: z.unknown().optional().meta({ description: "The workflow's result (any JSON value)." }),
};
const failedDone = {
  status: z.literal('failed'),
  error: doneErrorSchema.meta({ description: 'Why the run failed.' }),
};
const cancelledDone = { status: z.literal('cancelled') };

export const donePayloadSchema = z
  .discriminatedUnion('status', [z.strictObject(completedDone), z.strictObject(failedDone), z.strictObject(cancelledDone)])
  .meta({ description: 'How the run ended: the payload of `event: done`. It is not a TimelineEvent.' });

const withId = { id: eventIdSchema };
export const doneRecordSchema = z
  .discriminatedUnion('status', [
    z.strictObject({ ...withId, ...completedDone }),
    z.strictObject({ ...withId, ...failedDone }),
    z.strictObject({ ...withId, ...cancelledDone }),
  ])
  .meta({ description: '`done` with its id, ordered after every event of the session.' });

export const readyPayloadSchema = z
  .strictObject({ session_id: sessionIdSchema, status: sessionStatusSchema })
  .meta({ description: 'The first event of every stream, sent once the instance is subscribed.' });

export const gapPayloadSchema = z
  .strictObject({
    after: eventIdSchema.nullable().meta({ description: 'The position asked for (`null`: the start).' }),
    first_available: eventIdSchema.nullable().meta({ description: 'The oldest event still retained.' }),
  })
  .meta({ description: 'Events after `after` and before `first_available` are gone from the log (trimmed, expired or lost).' });

export const expiredPayloadSchema = z
  .strictObject({ code: z.literal('idle_timeout') })
  .meta({ description: 'No run started for the session within `STREAM_IDLE_TIMEOUT_MS`.' });

export const contextItemSchema = z.looseObject({ type: z.string().min(1), id: z.string().min(1) });

/** `POST /execute`. Unknown fields are rejected: a misspelt `sessionId` would otherwise start a run nobody streams. */
export const executeRequestSchema = z
  .strictObject({
    project_id: z.string().min(1).max(128),
    query: z.string().min(1).max(32768),
    context: z.array(contextItemSchema).max(1000).optional(),
    session_id: sessionIdSchema.optional().meta({ description: 'Made by the server when left out.' }),
    workflow: z.string().min(1).max(128).optional().meta({ description: 'A registered workflow. Defaults to `agents`.' }),
    params: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ description: "The workflow's parameters, validated by its own schema." }),
  })
  .meta({ description: 'Starts a workflow run on a session.' });

export const executeResultSchema = z
  .strictObject({
    session_id: sessionIdSchema,
    status: runOutcomeSchema,
    result: z.unknown().meta({ description: "The workflow's result; `null` unless `completed`." }),
    event_count: z.int().min(1).meta({ description: 'TimelineEvents of the run (`done` not counted).' }),
    duration_ms: z.int().min(0),
  })
  .meta({ description: 'The answer of a synchronous `POST /execute`, once the run ended.' });

export const executeAcceptedSchema = z
  .strictObject({
    session_id: sessionIdSchema,
    stream_url: z.string().meta({ description: 'The relative path `/timeline/stream/<session id>`.' }),
  })
  .meta({ description: 'The answer of `POST /execute` with `Prefer: respond-async`.' });

export const cancelAcceptedSchema = z
  .strictObject({ session_id: sessionIdSchema, status: z.literal('cancelling') })
  .meta({ description: 'The cancel is on its way to the instance running the session; `done` follows as `cancelled`.' });

export const sessionHistorySchema = z
  .strictObject({
    session_id: sessionIdSchema,
    status: sessionStatusSchema,
    events: z.array(timelineEventSchema),
    done: doneRecordSchema.nullable(),
  })
  .meta({ description: "The session's retained log: its events in order, and `done` (with its id) once it ended." });

export const healthSchema = z.strictObject({ status: z.literal('ok') });
export const readinessSchema = z.strictObject({ status: z.literal('ready') });

/** An error body whose code is one of `codes`. */
export const errorBodySchema = (codes: ErrorCode[] = errorCodes('http')) =>
  z.strictObject({
    error: z.strictObject({ code: enumOf(codes), message: z.string().min(1) }),
    session_id: sessionIdSchema.optional().meta({ description: 'The session of a run that failed or conflicted.' }),
  });

/**
 * The schemas that become named components of docs/openapi.yaml and docs/asyncapi.yaml, by
 * name (the names are the TypeScript types').
 */
export const NAMED_SCHEMAS = {
  TimelineEventType: timelineEventTypeSchema,
  TimelineEventStatus: timelineEventStatusSchema,
  SessionStatus: sessionStatusSchema,
  RunOutcome: runOutcomeSchema,
  TimelineEvent: timelineEventSchema,
  DonePayload: donePayloadSchema,
  DoneRecord: doneRecordSchema,
  ReadyPayload: readyPayloadSchema,
  GapPayload: gapPayloadSchema,
  ExpiredPayload: expiredPayloadSchema,
  ExecuteRequest: executeRequestSchema,
  ExecuteResult: executeResultSchema,
  ExecuteAccepted: executeAcceptedSchema,
  CancelAccepted: cancelAcceptedSchema,
  SessionHistory: sessionHistorySchema,
  ErrorBody: errorBodySchema(),
} as const;

// The schemas and the TypeScript types of the wire model describe the same values: a change
// to one that is not made to the other fails the type check here. (Error codes are a closed
// set here and a string in the SDK's types, so new codes do not break old clients.)
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Expect<T extends true> = T;
type Wire<S extends z.ZodType> = z.infer<S>;
/** `details` apart: a record here, any object there (the SDK's per-type details are interfaces). */
type WithoutDetails<T> = Omit<T, 'details'>;

export type WireTypesAgree = [
  Expect<Same<WithoutDetails<Wire<typeof timelineEventSchema>>, WithoutDetails<TimelineEventBase>>>,
  Expect<Wire<typeof timelineEventSchema> extends TimelineEventBase ? true : false>,
  Expect<Same<Wire<typeof stepDraftSchema>, StepDraft>>,
  Expect<Same<Wire<typeof readyPayloadSchema>, ReadyPayload>>,
  Expect<Same<Wire<typeof gapPayloadSchema>, GapPayload>>,
  Expect<Same<Wire<typeof expiredPayloadSchema>, ExpiredPayload>>,
  // The SDK's `done` unions spell out the absent fields (`error?: undefined`); every value here is one of them.
  Expect<Wire<typeof donePayloadSchema> extends DonePayload ? true : false>,
  Expect<Same<Wire<typeof donePayloadSchema>['status'], DonePayload['status']>>,
  Expect<Wire<typeof doneRecordSchema> extends DoneRecord ? true : false>,
  Expect<Same<Wire<typeof executeRequestSchema>, ExecuteRequest>>,
  Expect<Same<Wire<typeof executeResultSchema>, ExecuteResult>>,
  Expect<Same<Wire<typeof executeAcceptedSchema>, ExecuteAccepted>>,
  Expect<Same<Omit<Wire<typeof sessionHistorySchema>, 'done' | 'events'>, Omit<SessionHistory, 'done' | 'events'>>>,
  Expect<Wire<typeof sessionHistorySchema>['done'] extends SessionHistory['done'] ? true : false>,
  Expect<Wire<ReturnType<typeof errorBodySchema>> extends ErrorBody ? true : false>,
  // The client SDK names every code of the error table, by channel.
  Expect<Same<SdkHttpErrorCode, HttpErrorCode>>,
  Expect<Same<SdkRunErrorCode, DoneErrorCode>>,
  Expect<Same<SdkModelErrorCode, ModelErrorCode>>,
];
