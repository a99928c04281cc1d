import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunOutcome } from '../client-sdk/src/types';
import type { LogEntry } from './timeline/bus';
import { eventIdTimeMs } from './timeline/event-id';

/** Event latencies: a same-host write takes well under a millisecond, a loaded one seconds. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Runs: a synthetic run lasts milliseconds, an agents run on Claude minutes. */
const RUN_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Model calls: a scripted reply in tens of milliseconds, a long Claude answer a minute or two. */
const MODEL_CALL_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
/** Tokens of one model call, by powers of four. */
const TOKEN_BUCKETS = [16, 64, 256, 1024, 4096, 16384, 65536, 262144];

/** How a stream that asked to resume (`Last-Event-ID`) went on. */
export type ResumeOutcome = 'resumed' | 'gap' | 'finished';

/** What the gauges read at each scrape. */
export interface MetricSources {
  /** Whether the bus answers now. */
  busReachable(): Promise<boolean>;
  /** Seconds since the most silent run executing here published an event; `0` with no run. */
  longestRunIdleSeconds(): number;
}

/** The service's Prometheus metrics, on a registry of its own (several services per process in tests). */
export class Metrics {
  readonly registry = new Registry();
  private sources: MetricSources | null = null;
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
  readonly publishToWrite = new Histogram({
    name: 'timeline_publish_to_write_seconds',
    help: "From an event's publish (its id's millisecond) to its write to an SSE reader on this instance, per live write",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly executeToFirstEvent = new Histogram({
    name: 'timeline_execute_to_first_event_seconds',
    help: "From POST /execute received to the run's first event in the session log, by workflow",
    labelNames: ['workflow'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly runDuration = new Histogram({
    name: 'timeline_run_duration_seconds',
    help: 'Workflow runs finished on this instance: from the claim to done, by workflow and outcome',
    labelNames: ['workflow', 'outcome'] as const,
    buckets: RUN_BUCKETS,
    registers: [this.registry],
  });
  readonly modelCallDuration = new Histogram({
    name: 'timeline_model_call_duration_seconds',
    help: 'Model calls, by model, purpose and outcome (ok, aborted, or the error code)',
    labelNames: ['model', 'purpose', 'outcome'] as const,
    buckets: MODEL_CALL_BUCKETS,
    registers: [this.registry],
  });
  readonly modelTokens = new Histogram({
    name: 'timeline_model_call_tokens',
    help: 'Tokens of successful model calls, by model, purpose and type (input, output); _sum is the spend',
    labelNames: ['model', 'purpose', 'type'] as const,
    buckets: TOKEN_BUCKETS,
    registers: [this.registry],
  });
  readonly gapsSent = new Counter({
    name: 'timeline_gaps_sent_total',
    help: 'event: gap frames sent to readers (events trimmed or lost before the reader got them)',
    registers: [this.registry],
  });
  readonly resumes = new Counter({
    name: 'timeline_stream_resumes_total',
    help: 'Streams opened with Last-Event-ID, by outcome: resumed, gap (some events were gone), finished (204)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly busErrors = new Counter({
    name: 'timeline_bus_errors_total',
    help: 'Bus operations that failed (Redis unreachable, timed out, refused), by operation',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly busUp = new Gauge({
    name: 'timeline_bus_up',
    help: 'Whether the bus (Redis) answered a ping at this scrape: 1 or 0',
    registers: [this.registry],
    collect: async () => {
      if (this.sources) this.busUp.set((await this.sources.busReachable()) ? 1 : 0);
    },
  });
  readonly runLongestIdle = new Gauge({
    name: 'timeline_run_longest_idle_seconds',
    help: 'Seconds since the most silent run executing on this instance published an event (0: no run)',
    registers: [this.registry],
    collect: () => {
      if (this.sources) this.runLongestIdle.set(this.sources.longestRunIdleSeconds());
    },
  });

  constructor({ processMetrics = true }: { processMetrics?: boolean } = {}) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    for (const outcome of ['completed', 'failed', 'cancelled'] satisfies RunOutcome[]) {
      this.runs.labels(outcome).inc(0);
    }
    for (const outcome of ['resumed', 'gap', 'finished'] satisfies ResumeOutcome[]) {
      this.resumes.labels(outcome).inc(0);
    }
  }

  /** Gives the scrape-time gauges what they read (the service does, once its parts exist). */
  bind(sources: MetricSources): void {
    this.sources = sources;
  }

  /**
   * Records one live write of an event to a reader: the time since the event was appended to
   * the log, whose clock its id carries (Redis's, or the memory bus's), to the millisecond: a
   * difference of two whole-millisecond clocks is right on average. The stream writer calls it
   * per reader, for live entries only: a replayed event is history, not latency.
   */
  observePublishToWrite(entry: LogEntry, nowMs: number = Date.now()): void {
    this.publishToWrite.observe(Math.max(0, nowMs - eventIdTimeMs(entry.id)) / 1000);
  }

  /** Makes `timeline_streams_open` report `count()` (the stream registry's size). */
  countStreams(count: () => number): void {
    this.openStreams = count;
  }
}
