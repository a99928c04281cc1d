import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { RunOutcome } from '../client-sdk/src/types';

/** The service's Prometheus metrics, on a registry of its own (several services per process in tests). */
export class Metrics {
  readonly registry = new Registry();
  /** Where the open-streams gauge reads its value at each scrape; see `countStreams`. */
  private openStreams: () => number = () => 0;
  /**
   * A view of the stream registry, read when scraped, not a count kept beside it: it cannot
   * drift from what MAX_STREAMS bounds, whatever the order in which streams open and close.
   */
  readonly streamsOpen: Gauge = new Gauge({
    name: 'timeline_streams_open',
    help: 'SSE streams open on this instance (including those being set up): what MAX_STREAMS bounds',
    registers: [this.registry],
    collect: (): void => this.streamsOpen.set(this.openStreams()),
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
  readonly slowReadersCaughtUp = new Counter({
    name: 'timeline_slow_readers_caught_up_total',
    help: 'Live readers that fell MAX_BUFFERED_BYTES behind, then caught up from the log once their socket drained',
    registers: [this.registry],
  });
  readonly slowReadersClosed = new Counter({
    name: 'timeline_slow_readers_closed_total',
    help: 'Streams closed because their reader stayed stalled longer than SLOW_READER_TIMEOUT_MS',
    registers: [this.registry],
  });

  constructor({ processMetrics = true }: { processMetrics?: boolean } = {}) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    for (const outcome of ['completed', 'failed', 'cancelled'] satisfies RunOutcome[]) {
      this.runs.labels(outcome).inc(0);
    }
  }

  /** Makes `timeline_streams_open` report `count()` (the stream registry's size). */
  countStreams(count: () => number): void {
    this.openStreams = count;
  }
}
