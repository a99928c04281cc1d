import type { IncomingHttpHeaders } from 'node:http';
import { isSpanContextValid, propagation, ROOT_CONTEXT, trace, TraceFlags, type Context, type Span, type SpanContext } from '@opentelemetry/api';

/** Version 00 of the header; later versions may append fields, which this reader ignores as the spec asks. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The W3C `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header) of a sampled
 * span, to store with what it produced; `undefined` for a span that is not sampled, so an
 * unsampled trace costs no bytes downstream and starts no orphan spans there.
 */
export function traceparentOf(span: Span): string | undefined {
  const { traceId, spanId, traceFlags } = span.spanContext();
  if ((traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return `00-${traceId}-${spanId}-01`;
}

/** The context whose parent is the span a stored `traceparent` names; `undefined` if it is absent or malformed. */
export function contextFromTraceparent(traceparent: string | undefined): Context | undefined {
  const parent = traceparent === undefined ? null : parseTraceparent(traceparent);
  return parent === null ? undefined : trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** A `traceparent` as a remote span context; `null` if it is malformed or names no valid span. */
export function parseTraceparent(traceparent: string): SpanContext | null {
  const match = TRACEPARENT.exec(traceparent);
  if (match === null || match[1] === 'ff' || (match[1] === '00' && match[5] !== undefined)) return null;
  const parent: SpanContext = { traceId: match[2], spanId: match[3], traceFlags: parseInt(match[4], 16), isRemote: true };
  return isSpanContextValid(parent) ? parent : null;
}

/**
 * The trace context an HTTP request carries (`traceparent`, `tracestate`), read by the
 * configured propagators (`OTEL_PROPAGATORS`, W3C trace context by default); the root context
 * when it carries none.
 */
export function contextFromHeaders(headers: IncomingHttpHeaders): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}
