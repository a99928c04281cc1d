import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { RunOutcome } from '../client-sdk/src/types';

/** The service's Prometheus metrics, on a registry of its own (several services per process in tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly streamsOpen = new Gauge({
    name: 'timeline_streams_open',
    help: 'SSE streams open on this instance',
    registers: [this.registry],
  });
  readonly eventsPublished = new Counter({
    name: 'timeline_events_published_total',
    help: 'Timeline events published by runs on this instance',
    registers: [this.registry],
  });
  readonly runsActive = new Gauge({
    name: 'timeline_runs_active',
    help: 'Workflow runs executing on this instance',
    registers: [this.registry],
  });
  readonly runs = new Counter({
    name: 'timeline_runs_total',
    help: 'Workflow runs finished on this instance, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly slowReadersCut = new Counter({
    name: 'timeline_slow_readers_disconnected_total',
    help: 'Streams cut because their unsent data passed MAX_BUFFERED_BYTES',
    registers: [this.registry],
  });

  constructor({ processMetrics = true }: { processMetrics?: boolean } = {}) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    for (const outcome of ['completed', 'failed', 'cancelled'] satisfies RunOutcome[]) {
      this.runs.labels(outcome).inc(0);
    }
  }
}
