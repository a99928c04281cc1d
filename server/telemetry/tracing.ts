import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import { ConfigError } from '../config';

/** The instrumentation scope of every span the service makes. */
export const TRACER_NAME = 'timeline-service';

/**
 * Whether this process traces, and the tracer to use. Code on the event path reads `enabled`
 * before it builds a span or its attributes: with tracing off an event costs that one read,
 * not a no-op span object (`@opentelemetry/api`'s no-op tracer still allocates one per call).
 */
export const tracing: { enabled: boolean; tracer: Tracer } = {
  enabled: false,
  tracer: trace.getTracer(TRACER_NAME),
};

/** A running tracer provider; `shutdown` flushes the spans still queued for export. */
export interface TracingHandle {
  shutdown(): Promise<void>;
}

export interface StartTracingOptions {
  /**
   * Where spans go instead of the exporters the `OTEL_*` variables name (tests pass a
   * `SimpleSpanProcessor` over an `InMemorySpanExporter`). Given, tracing starts even when no
   * exporter is configured; `OTEL_SDK_DISABLED=true` still wins.
   */
  spanProcessors?: SpanProcessor[];
  env?: NodeJS.ProcessEnv;
}

/** The exporters `@opentelemetry/sdk-node` understands in `OTEL_TRACES_EXPORTER`. */
const TRACE_EXPORTERS = ['otlp', 'console', 'zipkin', 'none'];

type Env = NodeJS.ProcessEnv;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function disabled(env: Env): boolean {
  const raw = read(env, 'OTEL_SDK_DISABLED')?.toLowerCase();
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new ConfigError('OTEL_SDK_DISABLED', `expected true or false, got "${raw}"`);
}

function endpointSet(env: Env, name: string): boolean {
  const raw = read(env, name);
  if (raw === undefined) return false;
  if (!URL.canParse(raw)) throw new ConfigError(name, `"${raw}" is not a URL`);
  return true;
}

/**
 * Whether the standard `OTEL_*` variables ask for tracing: off unless `OTEL_TRACES_EXPORTER`
 * names an exporter or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_TRACES_EXPORTER=none` and
 * `OTEL_SDK_DISABLED=true` turn it off. Throws `ConfigError` for a value the SDK would only
 * warn about, so a typo stops the start instead of silently losing every trace.
 */
export function tracingRequested(env: Env = process.env): boolean {
  if (disabled(env)) return false;
  const exporters = (read(env, 'OTEL_TRACES_EXPORTER') ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);
  for (const name of exporters) {
    if (!TRACE_EXPORTERS.includes(name)) {
      throw new ConfigError('OTEL_TRACES_EXPORTER', `"${name}" is not one of ${TRACE_EXPORTERS.join(', ')}`);
    }
  }
  if (exporters.includes('none')) {
    if (exporters.length > 1) throw new ConfigError('OTEL_TRACES_EXPORTER', '"none" cannot be combined with an exporter');
    return false;
  }
  const endpoint = endpointSet(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') || endpointSet(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  return exporters.length > 0 || endpoint;
}

/**
 * Starts OpenTelemetry tracing when the environment asks for it (or `spanProcessors` are
 * given): `@opentelemetry/sdk-node` reads the rest of the `OTEL_*` variables itself (protocol,
 * headers, sampler, propagators, `OTEL_SERVICE_NAME`, resource attributes). Traces only: the
 * service's metrics are Prometheus (`/metrics`), and its logs pino. Spans are made by hand at
 * the points that matter (no auto-instrumentation: a span per Redis command or one open for a
 * stream's whole life would cost more than it tells). Resolves `null` when tracing stays off.
 * The SDK is loaded only then, so a service that does not trace never loads it.
 */
export async function startTracing(options: StartTracingOptions = {}): Promise<TracingHandle | null> {
  const env = options.env ?? process.env;
  if (disabled(env)) return null;
  if (!options.spanProcessors && !tracingRequested(env)) return null;
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({
    ...(read(env, 'OTEL_SERVICE_NAME') === undefined && { serviceName: TRACER_NAME }),
    ...(options.spanProcessors && { spanProcessors: options.spanProcessors }),
    instrumentations: [],
    // Traces only, whatever OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER default to in the SDK.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  tracing.tracer = trace.getTracer(TRACER_NAME);
  tracing.enabled = true;
  return {
    shutdown: async () => {
      tracing.enabled = false;
      try {
        await sdk.shutdown();
      } finally {
        // Leaves the process as it was before the start: a test may start tracing again.
        trace.disable();
        context.disable();
        propagation.disable();
        tracing.tracer = trace.getTracer(TRACER_NAME);
      }
    },
  };
}
