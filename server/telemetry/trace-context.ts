import type { IncomingHttpHeaders } from 'node:http';
import { propagation, ROOT_CONTEXT, trace, TraceFlags, type Context, type Span } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';

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
  if (traceparent === undefined) return undefined;
  const parent = parseTraceParent(traceparent);
  return parent === null ? undefined : trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true });
}

/**
 * The trace context an HTTP request carries (`traceparent`, `tracestate`), read by the
 * configured propagators (`OTEL_PROPAGATORS`, W3C trace context by default); the root context
 * when it carries none.
 */
export function contextFromHeaders(headers: IncomingHttpHeaders): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}
