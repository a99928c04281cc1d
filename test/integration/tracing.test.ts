import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { ModelError, type Model } from '../../server/models/model';
import { ATTR, startWriteSpan } from '../../server/telemetry/event-spans';
import { startTracing, tracing, type TracingHandle } from '../../server/telemetry/tracing';
import { request } from '../helpers/api';
import { execute, newSessionId, startService, type RunningService } from '../helpers/service';
import { waitUntil } from '../helpers/wait';

/** The caller's trace: W3C's own example ids. */
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
const traceparent = (traceId: string, flags = '01') => `00-${traceId}-${CALLER_SPAN}-${flags}`;

/** A model that always fails the way an overloaded provider does. */
const overloaded: Model = {
  name: 'overloaded-provider',
  async stream() {
    throw new ModelError('model_overloaded', 'The model provider is overloaded');
  },
};

let exporter: InMemorySpanExporter;
let handle: TracingHandle | null;
let svc: RunningService;
let failing: RunningService;

beforeAll(async () => {
  exporter = new InMemorySpanExporter();
  handle = await startTracing({ spanProcessors: [new SimpleSpanProcessor({ exporter })], env: {} });
  svc = await startService({ keepAliveMs: null });
  failing = await startService({ keepAliveMs: null }, { model: overloaded });
});

afterAll(async () => {
  await svc.close();
  await failing.close();
  await handle?.shutdown();
});

/** The finished spans of one trace, once its `POST /execute` span has ended (after the response). */
async function traceOf(traceId: string): Promise<ReadableSpan[]> {
  const ofTrace = () => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
  await waitUntil(() => ofTrace().some((span) => span.name === 'POST /execute'), { label: `the POST span of ${traceId}` });
  return ofTrace();
}

function one(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((span) => span.name === name);
  expect({ name, count: found.length }).toEqual({ name, count: 1 });
  return found[0];
}

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan) => span.spanContext().spanId;

describe('tracing (in-memory exporter)', () => {
  it('is on once started', () => {
    expect(handle).not.toBeNull();
    expect(tracing.enabled).toBe(true);
  });

  it("continues the caller's traceparent: POST /execute → run → every publish and model call", async () => {
    const sessionId = newSessionId();
    const response = await execute(
      svc.url,
      { project_id: 'p1', query: 'Write a short poem about queues', session_id: sessionId },
      { traceparent: traceparent(TRACE_ID), 'X-Request-Id': 'req-trace-1' },
    );
    expect(response.status).toBe(200);
    const spans = await traceOf(TRACE_ID);

    const post = one(spans, 'POST /execute');
    expect(post.kind).toBe(SpanKind.SERVER);
    expect(parentOf(post)).toBe(CALLER_SPAN);
    expect(post.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/execute',
      'http.response.status_code': 200,
      [ATTR.requestId]: 'req-trace-1',
      [ATTR.sessionId]: sessionId,
    });

    const run = one(spans, 'run agents');
    expect(parentOf(run)).toBe(idOf(post));
    expect(run.attributes).toMatchObject({
      [ATTR.sessionId]: sessionId,
      [ATTR.workflow]: 'agents',
      [ATTR.requestId]: 'req-trace-1',
      [ATTR.outcome]: 'completed',
      [ATTR.eventCount]: response.body.event_count,
    });

    // The router's call, then the writer's.
    const calls = spans.filter((span) => span.name === 'chat scripted');
    expect(calls.map((call) => call.attributes['timeline.model.purpose'])).toEqual(['route', 'writer']);
    for (const call of calls) {
      expect(call.kind).toBe(SpanKind.CLIENT);
      expect(parentOf(call)).toBe(idOf(run));
      expect(call.attributes).toMatchObject({ 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'scripted' });
      expect(call.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    }

    // One publish per event, WORKFLOW_START (published with the claim) and done included.
    const publishes = spans.filter((span) => span.name === 'timeline.publish');
    expect(publishes).toHaveLength(response.body.event_count + 1);
    for (const publish of publishes) {
      expect(publish.kind).toBe(SpanKind.PRODUCER);
      expect(parentOf(publish)).toBe(idOf(run));
    }
    expect(publishes.map((span) => span.attributes[ATTR.eventType])).toEqual(
      expect.arrayContaining(['WORKFLOW_START', 'ROUTER_THOUGHT', 'WORKFLOW_COMPLETE', 'done']),
    );

    // Each stored entry carries its publish span's traceparent (beside the data, not in it),
    // and a write span made from the entry is that publish span's child, in the same trace.
    const { entries } = await svc.service.bus.read(sessionId, null);
    expect(entries).toHaveLength(publishes.length);
    for (const entry of entries) {
      const publish = publishes.find((span) =>
        entry.kind === 'done' ? span.attributes[ATTR.eventType] === 'done' : span.attributes[ATTR.eventSeq] === entry.seq,
      );
      expect({ id: entry.id, traceparent: entry.traceparent }).toEqual({ id: entry.id, traceparent: `00-${TRACE_ID}-${publish && idOf(publish)}-01` });
      expect(entry.data).not.toContain(TRACE_ID);
      const write = startWriteSpan(sessionId, entry);
      write?.end();
      const written = exporter.getFinishedSpans().at(-1) as ReadableSpan;
      expect(written.name).toBe('timeline.write');
      expect(written.kind).toBe(SpanKind.CONSUMER);
      expect(written.spanContext().traceId).toBe(TRACE_ID);
      expect(parentOf(written)).toBe(publish && idOf(publish));
    }
  });

  it('starts a trace of its own when the request carries none', async () => {
    const sessionId = newSessionId();
    const before = new Set(exporter.getFinishedSpans().map((span) => span.spanContext().traceId));
    expect((await execute(svc.url, { project_id: 'p1', query: 'load', session_id: sessionId, workflow: 'agents', params: { route: 'writer' } })).status).toBe(200);
    await waitUntil(() => exporter.getFinishedSpans().some((span) => span.name === 'POST /execute' && !before.has(span.spanContext().traceId)), {
      label: 'a new trace',
    });
    const post = exporter.getFinishedSpans().find((span) => span.name === 'POST /execute' && !before.has(span.spanContext().traceId)) as ReadableSpan;
    expect(post.parentSpanContext).toBeUndefined();
    const { entries } = await svc.service.bus.read(sessionId, null);
    for (const entry of entries) expect(entry.traceparent?.split('-')[1]).toBe(post.spanContext().traceId);
  });

  it('records nothing and stores no traceparent for a caller whose trace is not sampled', async () => {
    const unsampled = '4bf92f3577b34da6a3ce929d0e0e4736';
    const sessionId = newSessionId();
    const response = await execute(
      svc.url,
      { project_id: 'p1', query: 'load', session_id: sessionId, workflow: 'agents', params: { route: 'writer' } },
      { traceparent: traceparent(unsampled, '00') },
    );
    expect(response.status).toBe(200);
    const { entries } = await svc.service.bus.read(sessionId, null);
    expect(entries.length).toBeGreaterThan(2);
    for (const entry of entries) {
      expect(entry.traceparent).toBeUndefined();
      expect(startWriteSpan(sessionId, entry)).toBeNull();
    }
    expect(exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === unsampled)).toEqual([]);
  });

  it('marks a failed model call and its run as errors, with the error code', async () => {
    const failedTrace = '5bf92f3577b34da6a3ce929d0e0e4737';
    const response = await execute(failing.url, { project_id: 'p1', query: 'hi', workflow: 'agents' }, { traceparent: traceparent(failedTrace) });
    expect(response.status).toBe(502);
    const spans = await traceOf(failedTrace);
    const call = one(spans, 'chat overloaded-provider');
    expect(call.status.code).toBe(SpanStatusCode.ERROR);
    expect(call.attributes['error.type']).toBe('model_overloaded');
    const run = one(spans, 'run agents');
    expect(run.status).toEqual({ code: SpanStatusCode.ERROR, message: 'model_overloaded' });
    expect(run.attributes[ATTR.outcome]).toBe('failed');
    expect(one(spans, 'POST /execute').attributes['http.response.status_code']).toBe(502);
  });

  it('traces the history route as a server span too', async () => {
    const historyTrace = '6bf92f3577b34da6a3ce929d0e0e4738';
    const sessionId = newSessionId();
    await execute(svc.url, { project_id: 'p1', query: 'load', session_id: sessionId, workflow: 'agents', params: { route: 'writer' } });
    const history = await request(`${svc.url}/timeline/${sessionId}`, { headers: { traceparent: traceparent(historyTrace) } });
    expect(history.status).toBe(200);
    await waitUntil(() => exporter.getFinishedSpans().some((span) => span.spanContext().traceId === historyTrace), { label: 'the history span' });
    const span = exporter.getFinishedSpans().find((s) => s.spanContext().traceId === historyTrace) as ReadableSpan;
    expect(span.name).toBe('GET /timeline/:sessionId');
    expect(parentOf(span)).toBe(CALLER_SPAN);
  });
});
