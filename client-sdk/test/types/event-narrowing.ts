/**
 * Type test, compiled by `npm run typecheck` (part of `npm test`), never run: each
 * `@ts-expect-error` line must be an error, or the compile fails; each `exactly<T>()(value)`
 * compiles only when `value` has exactly type `T`.
 * It proves that `switch (event.type)` narrows `details`, `done` narrows on `status`, and the
 * React hook's result is typed.
 */
import type {
  DonePayload,
  DoneRecord,
  ErrorBody,
  ExpiredPayload,
  GapPayload,
  ReadyPayload,
  RunErrorCode,
  TimelineEvent,
  TimelineEventOf,
  TimelineError,
  TimelineErrorCode,
} from '../../src/index';
import type { UseTimelineResult } from '../../src/react/index';

/** Compiles only when `value` has exactly type `T` (not a subtype, not a supertype). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const exactly =
  <T>() =>
  <V>(value: V & (Equal<T, V> extends true ? unknown : never)): V =>
    value;

export function narrowsDetails(event: TimelineEvent): string {
  // @ts-expect-error details differ per type: nothing but the common fields before narrowing
  void event.details.text;
  switch (event.type) {
    case 'WORKFLOW_START':
      exactly<'IN_PROGRESS'>()(event.status);
      return `${event.details.workflow} ${event.details.project_id} ${event.details.query}`;
    case 'ROUTER_THOUGHT': {
      exactly<'writer' | 'researcher' | 'discussion'>()(event.details.route);
      exactly<number>()(event.details.confidence);
      // usage is absent when params.route forced the route
      // @ts-expect-error possibly undefined
      void event.details.usage.input_tokens;
      return event.details.reason;
    }
    case 'AGENT_START':
      // @ts-expect-error details are absent on most agent starts (only discussion turns have them)
      void event.details.turn;
      return String(event.details?.turn ?? '');
    case 'AGENT_TOKEN':
      exactly<number>()(event.details.chars);
      // @ts-expect-error a token has no usage
      void event.details.usage;
      return event.details.text;
    case 'AGENT_MESSAGE':
      // @ts-expect-error a synthetic message has no text: narrow on the shape first
      void event.details.text;
      if ('i' in event.details) return `${event.details.i} ${event.details.sent_mono_ms} ${event.details.pad}`;
      exactly<number>()(event.details.usage.output_tokens);
      return `${event.details.turn}: ${event.details.text}`;
    case 'TOOL_CALL':
      exactly<string[]>()(event.details.output);
      return event.details.input.query;
    case 'AGENT_COMPLETE':
      return `${event.details.text} (${event.details.usage.output_tokens})`;
    case 'WORKFLOW_COMPLETE':
      exactly<'SUCCESS'>()(event.status);
      exactly<unknown>()(event.details.result);
      return String(event.details.duration_ms);
    case 'WORKFLOW_ERROR':
      exactly<'ERROR'>()(event.status);
      exactly<RunErrorCode | (string & {})>()(event.details.error.code);
      return event.details.error.message;
    case 'WORKFLOW_CANCELLED':
      exactly<undefined>()(event.details);
      return event.message;
    default:
      // Every type is handled: what is left is never.
      return exactly<never>()(event);
  }
}

export function narrowsOneType(token: TimelineEventOf<'AGENT_TOKEN'>): string {
  // @ts-expect-error wrong type for its details
  const route: string = token.details.route;
  return token.details.text + route;
}

export function narrowsDone(done: DonePayload<{ answer: string }>, record: DoneRecord): string {
  exactly<string>()(record.id);
  switch (done.status) {
    case 'completed':
      // @ts-expect-error a completed run has no error
      void done.error.code;
      return done.result?.answer ?? '';
    case 'failed':
      // @ts-expect-error a failed run has no result
      void done.result.answer;
      return `${done.error.code}: ${done.error.message}`;
    case 'cancelled':
      // @ts-expect-error a cancelled run has neither
      void done.error.code;
      return 'cancelled';
  }
}

export function typesPayloads(ready: ReadyPayload, gap: GapPayload, expired: ExpiredPayload, body: ErrorBody): string[] {
  exactly<'waiting' | 'running' | 'completed' | 'failed' | 'cancelled'>()(ready.status);
  exactly<string | null>()(gap.first_available);
  exactly<'idle_timeout'>()(expired.code);
  // Known codes complete in an editor; a newer server's code is still a string.
  const known: ErrorBody['error']['code'] = 'session_conflict';
  const newer: ErrorBody['error']['code'] = 'some_future_code';
  return [known, newer, body.error.message];
}

export function typesTheHook(t: UseTimelineResult<{ answer: string }>): void {
  exactly<'idle' | 'waiting' | 'running' | 'completed' | 'failed' | 'cancelled'>()(t.status);
  exactly<readonly TimelineEvent[]>()(t.events);
  exactly<{ answer: string } | undefined>()(t.result);
  exactly<TimelineError | null>()(t.error);
  if (t.error) {
    // The SDK's codes and the service's complete in an editor; any other string still fits.
    const code: TimelineErrorCode = t.error.code;
    if (code === 'retries_exhausted' || code === 'session_conflict' || code === 'run_lost' || code === 'newer_code') void code;
  }
  exactly<string | null>()(t.sessionId);
  t.start({ project_id: 'p', query: 'q', workflow: 'synthetic', params: { events: 3 } });
  // @ts-expect-error the hook makes the session id itself
  t.start({ project_id: 'p', query: 'q', session_id: 'x' });
  // @ts-expect-error a run needs a query
  t.start({ project_id: 'p' });
  void t.cancel().then(() => t.reset());
}
