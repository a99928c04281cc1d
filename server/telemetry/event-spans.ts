import { SpanKind, type Context, type Link, type Span, type SpanContext } from '@opentelemetry/api';
import type { LogEntry } from '../timeline/bus';
import { contextFromTraceparent } from './trace-context';
import { tracing } from './tracing';

/**
 * The spans of one event's way from a run to a browser, across instances:
 *
 *   run span ── `timeline.publish` (owner's instance; its traceparent is stored with the entry)
 *                 └── `timeline.write` (the instance serving each reader: one per reader)
 *
 * The traceparent travels inside the bus entry (`LogEntry.traceparent`, beside `data`, never
 * in the JSON clients see), so the write continues the publisher's trace wherever it happens.
 * Callers check `tracing.enabled` first: with tracing off nothing here runs.
 */

/** Attribute names of the service's own span attributes. */
export const ATTR = {
  sessionId: 'timeline.session_id',
  requestId: 'timeline.request_id',
  workflow: 'timeline.workflow',
  outcome: 'timeline.outcome',
  eventId: 'timeline.event.id',
  eventSeq: 'timeline.event.seq',
  eventType: 'timeline.event.type',
  eventCount: 'timeline.event_count',
} as const;

/**
 * A span for publishing one entry of a session (an event of `type` and `seq`, or `done`), a
 * child of the run's span; end it once the bus answered.
 */
export function startPublishSpan(run: Context, sessionId: string, type: string, seq?: number): Span {
  return tracing.tracer.startSpan(
    'timeline.publish',
    {
      kind: SpanKind.PRODUCER,
      attributes: { [ATTR.sessionId]: sessionId, [ATTR.eventType]: type, ...(seq !== undefined && { [ATTR.eventSeq]: seq }) },
    },
    run,
  );
}

/**
 * A span for writing `entry` to one SSE reader, a child of the entry's publish span; `null`
 * when the entry carries no traceparent (tracing was off or the trace not sampled where it
 * was published). `reader` (the span context of the stream's own request, if it has one)
 * becomes a link, so the reader's side can be found from the write too. End it after the write.
 */
export function startWriteSpan(sessionId: string, entry: LogEntry, reader?: SpanContext): Span | null {
  const parent = contextFromTraceparent(entry.traceparent);
  if (parent === undefined) return null;
  const links: Link[] | undefined = reader ? [{ context: reader }] : undefined;
  return tracing.tracer.startSpan(
    'timeline.write',
    {
      kind: SpanKind.CONSUMER,
      attributes: { [ATTR.sessionId]: sessionId, [ATTR.eventId]: entry.id, ...(entry.seq !== undefined && { [ATTR.eventSeq]: entry.seq }) },
      links,
    },
    parent,
  );
}
