import { SpanKind, SpanStatusCode, type Context } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics';
import { ModelError, type Model, type ModelCallOptions, type ModelReply, type ModelRequest } from '../models/model';
import { tracing } from '../telemetry/tracing';

export interface RunModelContext {
  metrics: Metrics;
  /** The run's logger: the model's lines carry its session and request ids. */
  log: Logger;
  /** The run span's context (with tracing on): each call is its child. */
  trace?: Context;
}

/**
 * The model as one run sees it: each call timed into `timeline_model_call_duration_seconds`
 * and, when it succeeds, its tokens into `timeline_model_call_tokens`; traced as a child of
 * the run's span (a `chat <model>` span with OpenTelemetry's GenAI attributes); logging with
 * the run's fields. A call's outcome is `ok`, `aborted` (cancel, shutdown) or the
 * `ModelError` code (`model_rate_limited`, …); anything else is `error`.
 */
export function modelForRun(model: Model, run: RunModelContext): Model {
  const id = model.id ?? model.name;
  return {
    name: model.name,
    id,
    async stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply> {
      const startedAt = performance.now();
      const span = tracing.enabled && run.trace ? startModelSpan(model.name, id, request, run.trace) : null;
      let outcome = 'ok';
      try {
        const reply = await model.stream(request, { ...options, log: options.log ?? run.log });
        const { input_tokens, output_tokens } = reply.usage;
        run.metrics.modelTokens.labels(id, request.purpose, 'input').observe(input_tokens);
        run.metrics.modelTokens.labels(id, request.purpose, 'output').observe(output_tokens);
        span?.setAttributes({ 'gen_ai.usage.input_tokens': input_tokens, 'gen_ai.usage.output_tokens': output_tokens });
        return reply;
      } catch (error) {
        outcome = options.signal.aborted ? 'aborted' : error instanceof ModelError ? error.code : 'error';
        span?.setAttribute('error.type', outcome);
        if (outcome !== 'aborted') span?.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        throw error;
      } finally {
        run.metrics.modelCallDuration.labels(id, request.purpose, outcome).observe((performance.now() - startedAt) / 1000);
        span?.end();
      }
    },
  };
}

function startModelSpan(provider: string, id: string, request: ModelRequest, parent: Context) {
  return tracing.tracer.startSpan(
    `chat ${id}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': provider,
        'gen_ai.request.model': id,
        'gen_ai.request.max_tokens': request.maxTokens,
        'timeline.model.purpose': request.purpose,
      },
    },
    parent,
  );
}
