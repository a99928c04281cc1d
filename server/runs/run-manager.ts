import { randomUUID } from 'node:crypto';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { DonePayload, RunOutcome } from '../../client-sdk/src/types';
import type { Metrics } from '../metrics';
import type { Model } from '../models/model';
import { ATTR, startPublishSpan } from '../telemetry/event-spans';
import { traceparentOf } from '../telemetry/trace-context';
import { tracing } from '../telemetry/tracing';
import { RunLostError, type EventDraft, type PublishOptions, type TimelineBus } from '../timeline/bus';
import type { StepDraft, Workflow, WorkflowInput } from '../workflows/workflow';
import { CallerSlots } from './caller-slots';
import { endingFromError, type RunEnding } from './outcome';
import { EventTooLargeError, PublishBacklogFullError, PublishBudget, type PublishBudgetOptions } from './publish-budget';
import { RunAbort, untilAborted } from './run-abort';
import { modelForRun } from './run-model';

export interface RunManagerOptions {
  bus: TimelineBus;
  model: Model;
  log: Logger;
  metrics: Metrics;
  /** Lease of a run owner, renewed at a third of it. Defaults to `10000`. */
  runLeaseMs?: number;
  /** `MAX_RUNS`: runs executing (or being claimed) at once; beyond it `start` throws `TooManyRunsError`. */
  maxRuns: number;
  /** `MAX_RUN_DURATION_MS`: a run still going after this is aborted and fails with `run_timeout`. */
  maxRunDurationMs: number;
  /** `MAX_RUNS_PER_CALLER`: runs one caller may have going (or being claimed) on this instance. */
  maxRunsPerCaller: number;
  /** `MAX_EVENT_BYTES` and `MAX_PUBLISH_BACKLOG_BYTES` (see `PublishBudget`). */
  publishBudget: PublishBudgetOptions;
}

export interface RunSummary {
  sessionId: string;
  status: RunOutcome;
  result: unknown;
  error?: DonePayload['error'];
  failure?: RunEnding['failure'];
  eventCount: number;
  durationMs: number;
}

/** Where a run came from: who asked for it, and the request that started it. */
export interface RunOrigin {
  /** The authenticated caller (auth on): the session is theirs, stored with the run. Defaults to `null`. */
  caller?: string | null;
  /**
   * Whose runs count against `maxRunsPerCaller`: the caller, or the client's address when auth
   * is off. `null`: nobody's (a run started from code). Defaults to `null`.
   */
  limitKey?: string | null;
  /** The request's id: on every log line of the run and on its span. */
  requestId?: string;
  /** When the request arrived (`performance.now()`), for `timeline_execute_to_first_event_seconds`. */
  receivedAt?: number;
  /** The request's trace context (with tracing on): the run's span is its child. */
  trace?: Context;
}

/** A started run: its session and the promise of how it ended (never rejects). */
export interface RunHandle {
  sessionId: string;
  finished: Promise<RunSummary>;
}

interface ActiveRun {
  controller: AbortController;
  finished: Promise<RunSummary>;
  progress: RunProgress;
}

interface RunProgress {
  /** `performance.now()` when the run last published an event. */
  lastEventAt: number;
}

/** What a run's execution is given besides its workflow and input. */
interface RunScope {
  controller: AbortController;
  progress: RunProgress;
  origin: RunOrigin;
  /** The run's span (with tracing on); `execute` ends it. */
  span: Span | null;
}

/** Session already running or finished: the caller answers `409 session_conflict`. */
export class SessionConflictError extends Error {
  constructor(readonly sessionId: string) {
    super(`Session ${sessionId} is already running or finished`);
    this.name = 'SessionConflictError';
  }
}

/** The caller has `MAX_RUNS_PER_CALLER` runs going on this instance: the HTTP layer answers `429`. */
export class TooManyCallerRunsError extends Error {
  constructor(readonly limit: number) {
    super(`This caller already has ${limit} runs going (MAX_RUNS_PER_CALLER); retry once one has ended`);
    this.name = 'TooManyCallerRunsError';
  }
}

/** The instance runs `MAX_RUNS` already: the caller answers `503 too_many_runs`. */
export class TooManyRunsError extends Error {
  constructor() {
    super('This instance has too many running workflows');
    this.name = 'TooManyRunsError';
  }
}

/** Starts workflow runs on this instance and guarantees each ends with exactly one `done`. */
export class RunManager {
  /** Identifies this instance as a run owner (the run lock's value). */
  readonly ownerId = randomUUID();
  private readonly active = new Map<string, ActiveRun>();
  private readonly leaseMs: number;
  private readonly stopListening: () => void;
  /** Starts awaiting their claim: counted against `maxRuns` with the active runs. */
  private claiming = 0;
  /** Set once a shutdown's grace period is over: runs still going (or starting) end as `shutdown`. */
  private graceOver = false;
  private readonly callerSlots: CallerSlots;
  /** Bytes of this instance's events on their way to the bus. */
  readonly publishBudget: PublishBudget;

  constructor(private readonly options: RunManagerOptions) {
    this.leaseMs = options.runLeaseMs ?? 10000;
    this.callerSlots = new CallerSlots(options.maxRunsPerCaller);
    this.publishBudget = new PublishBudget(options.publishBudget);
    this.stopListening = options.bus.onCancelRequest((sessionId) => this.abort(sessionId, 'cancelled'));
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Seconds since the most silent run executing here published an event; `0` with no run. */
  longestIdleSeconds(): number {
    const now = performance.now();
    let longest = 0;
    for (const run of this.active.values()) longest = Math.max(longest, now - run.progress.lastEventAt);
    return longest / 1000;
  }

  /**
   * Claims the session (atomic, across instances) and starts the run in the background. The
   * claim carries `WORKFLOW_START`, so the run's first event needs no round trip of its own.
   */
  async start<P>(sessionId: string, workflow: Workflow<P>, input: WorkflowInput<P>, origin: RunOrigin = {}): Promise<RunHandle> {
    const first = toEvent(sessionId, 1, {
      type: 'WORKFLOW_START',
      status: 'IN_PROGRESS',
      message: `Workflow ${workflow.name} started`,
      details: { workflow: workflow.name, project_id: input.project_id, query: input.query },
    });
    // Checked and counted before any await, so concurrent starts cannot overshoot the limits.
    if (!this.publishBudget.hasRoom) throw new PublishBacklogFullError(this.options.publishBudget.maxBacklogBytes);
    // WORKFLOW_START carries the query: a request can make it too large (EventTooLargeError).
    const firstBytes = this.publishBudget.take(first);
    const limitKey = origin.limitKey ?? null;
    let slotTaken = false;
    const releaseSlot = () => {
      if (slotTaken && limitKey !== null) this.callerSlots.release(limitKey);
      slotTaken = false;
    };
    const { metrics } = this.options;
    let span: Span | null;
    let publishSpan: Span | null;
    try {
      if (limitKey !== null) {
        if (!this.callerSlots.tryTake(limitKey)) throw new TooManyCallerRunsError(this.options.maxRunsPerCaller);
        slotTaken = true;
      }
      if (this.active.size + this.claiming >= this.options.maxRuns) throw new TooManyRunsError();
      span = tracing.enabled ? startRunSpan(sessionId, workflow.name, origin) : null;
      publishSpan = span && startPublishSpan(trace.setSpan(ROOT_CONTEXT, span), sessionId, first.type, first.seq);
      this.claiming += 1;
      let claimed: boolean;
      try {
        claimed = await this.options.bus.claimRun(sessionId, this.ownerId, this.leaseMs, first, {
          ...publishOptions(publishSpan),
          caller: origin.caller ?? null,
        });
      } catch (error) {
        endSpan(publishSpan, 'bus_error');
        endSpan(span, 'bus_error');
        throw error;
      } finally {
        this.claiming -= 1;
      }
      if (!claimed) {
        endSpan(publishSpan, 'session_conflict');
        endSpan(span, 'session_conflict');
        throw new SessionConflictError(sessionId);
      }
    } catch (error) {
      releaseSlot();
      throw error;
    } finally {
      this.publishBudget.release(firstBytes);
    }
    publishSpan?.end();
    metrics.eventsPublished.inc();
    if (origin.receivedAt !== undefined) {
      metrics.executeToFirstEvent.labels(workflow.name).observe((performance.now() - origin.receivedAt) / 1000);
    }
    const controller = new AbortController();
    const progress: RunProgress = { lastEventAt: performance.now() };
    const finished = this.execute(sessionId, workflow, input, { controller, progress, origin, span });
    this.active.set(sessionId, { controller, finished, progress });
    this.options.metrics.runsActive.set(this.active.size);
    void finished.finally(() => {
      this.active.delete(sessionId);
      releaseSlot();
      this.options.metrics.runsActive.set(this.active.size);
    });
    if (this.graceOver) this.abort(sessionId, 'shutdown');
    return { sessionId, finished };
  }

  /** Aborts a run of this instance; returns whether it was running here. */
  abort(sessionId: string, reason: RunAbort['reason']): boolean {
    const run = this.active.get(sessionId);
    if (!run) return false;
    if (!run.controller.signal.aborted) run.controller.abort(new RunAbort(reason));
    return true;
  }

  /**
   * Lets running runs finish for up to `graceMs`, then aborts the rest as `shutdown` and
   * waits for their `done`. A run that a request already in flight starts meanwhile is waited
   * for too (and ended at once if the grace is over by then). Cancel requests are still obeyed
   * meanwhile: a run cancelled during the grace ends `cancelled`, not `shutdown`.
   */
  async shutdown(graceMs: number): Promise<void> {
    const timer = setTimeout(() => {
      this.graceOver = true;
      for (const sessionId of this.active.keys()) this.abort(sessionId, 'shutdown');
    }, graceMs);
    try {
      while (this.active.size > 0) await Promise.all([...this.active.values()].map((run) => run.finished));
    } finally {
      clearTimeout(timer);
      this.stopListening();
    }
  }

  private async execute<P>(
    sessionId: string,
    workflow: Workflow<P>,
    input: WorkflowInput<P>,
    { controller, progress, origin, span }: RunScope,
  ): Promise<RunSummary> {
    const { bus, log: baseLog, metrics } = this.options;
    const log = baseLog.child({
      session_id: sessionId,
      workflow: workflow.name,
      ...(origin.requestId !== undefined && { request_id: origin.requestId }),
    });
    const startedAt = Date.now();
    // For the duration histogram: a fast run can start and end within one Date.now() millisecond.
    const startedAtPrecise = performance.now();
    const signal = controller.signal;
    // The parent of the run's publish and model-call spans (with tracing on).
    const runTrace = span ? trace.setSpan(ROOT_CONTEXT, span) : undefined;
    const model = modelForRun(this.options.model, { metrics, log, trace: runTrace });
    // WORKFLOW_START went out with the claim (see start).
    let seq = 1;
    let eventCount = 1;
    let tail: Promise<unknown> = Promise.resolve();
    let inFlight = 0;

    // One writer per session: seq is assigned here, and publishes are chained so the log
    // keeps emit order even when a workflow does not await each emit. A workflow that awaits
    // each emit (the usual case) publishes at once, without going through the chain.
    // `essential`: the run's terminal step, written whatever the backlog (see PublishBudget).
    const emit = (step: StepDraft, { essential = false } = {}): Promise<void> => {
      const event = toEvent(sessionId, seq + 1, step);
      let bytes: number;
      try {
        bytes = this.publishBudget.take(event, { essential });
      } catch (error) {
        // Refused before it had a seq: the log stays contiguous.
        return handled(Promise.reject(error as Error));
      }
      seq += 1;
      const publishSpan = runTrace && startPublishSpan(runTrace, sessionId, event.type, event.seq);
      const options = publishOptions(publishSpan);
      inFlight += 1;
      const published =
        inFlight === 1 ? bus.publish(sessionId, event, options) : tail.then(() => bus.publish(sessionId, event, options));
      const settled = published.then(
        (id) => {
          this.publishBudget.release(bytes);
          inFlight -= 1;
          eventCount += 1;
          metrics.eventsPublished.inc();
          progress.lastEventAt = performance.now();
          publishSpan?.setAttribute(ATTR.eventId, id);
          publishSpan?.end();
        },
        (error: unknown) => {
          this.publishBudget.release(bytes);
          inFlight -= 1;
          endSpan(publishSpan, error instanceof RunLostError ? 'run_lost' : 'bus_error');
          // Another instance ended the session (our lease had expired): stop, as a lost renewal would.
          if (error instanceof RunLostError) loseLease();
          throw error;
        },
      );
      tail = settled.catch(() => undefined);
      return settled;
    };

    const loseLease = () => {
      if (signal.aborted) return;
      log.warn('run lease lost; aborting');
      controller.abort(new RunAbort('lease_lost'));
    };
    const lease = setInterval(() => {
      bus.renewLease(sessionId, this.ownerId, this.leaseMs).then(
        (held) => {
          if (!held) loseLease();
        },
        (error: unknown) => log.warn({ err: error }, 'lease renewal failed'),
      );
    }, Math.max(1, Math.floor(this.leaseMs / 3)));
    lease.unref();
    const deadline = setTimeout(() => {
      if (!signal.aborted) controller.abort(new RunAbort('timeout'));
    }, this.options.maxRunDurationMs);
    deadline.unref();

    // What the workflow emits once it has returned, or once its run was aborted, is refused:
    // the run's terminal step and `done` must be the last entries of its log. Once the budget
    // refused one of its events, every later one is refused too (the log would have a hole),
    // and the run fails with that refusal even if the workflow did not await its emits.
    let workflowOver = false;
    let refusal: Error | null = null;
    const workflowEmit = (step: StepDraft): Promise<void> => {
      if (workflowOver) return handled(Promise.reject(signal.aborted ? (signal.reason as Error) : new Error('the run has ended')));
      if (refusal !== null) return handled(Promise.reject(refusal));
      return handled(
        emit(step).catch((error: unknown) => {
          if (error instanceof EventTooLargeError || error instanceof PublishBacklogFullError) refusal ??= error;
          throw error;
        }),
      );
    };

    // Until the run proves otherwise, it failed: whatever happens, `done` carries an outcome.
    let ending: RunEnding = endingFromError(new Error('run did not finish'), signal);
    let result: unknown;
    let doneId: string | null;
    try {
      try {
        result = await untilAborted(workflow.run(input, { sessionId, signal, model, emit: workflowEmit, log }), signal);
      } finally {
        workflowOver = true;
      }
      signal.throwIfAborted();
      if (refusal !== null) throw refusal;
      await emit({
        type: 'WORKFLOW_COMPLETE',
        status: 'SUCCESS',
        message: `Workflow ${workflow.name} completed`,
        details: { result, duration_ms: Date.now() - startedAt },
      });
      ending = { done: { status: 'completed', result } };
    } catch (error) {
      result = null;
      ending = endingFromError(error, signal);
      if (signal.aborted) log.info({ code: ending.done.error?.code ?? ending.done.status }, 'run aborted');
      else log.warn({ err: error, code: ending.done.error?.code }, 'run failed');
      await this.emitTerminalStep(emit, ending.done, log);
    } finally {
      clearInterval(lease);
      clearTimeout(deadline);
      await tail;
      doneId = await this.signalDone(sessionId, ending.done, log, runTrace);
    }
    const outcome = ending.done.status;
    metrics.runs.labels(outcome).inc();
    metrics.runDuration.labels(workflow.name, outcome).observe((performance.now() - startedAtPrecise) / 1000);
    if (span) {
      span.setAttributes({ [ATTR.outcome]: outcome, [ATTR.eventCount]: eventCount });
      if (outcome === 'failed') span.setStatus({ code: SpanStatusCode.ERROR, message: ending.done.error?.code });
      span.end();
    }
    log.info({ status: outcome, events: eventCount, done_id: doneId }, 'run finished');
    return {
      sessionId,
      status: ending.done.status,
      result,
      error: ending.done.error,
      failure: ending.failure,
      eventCount,
      durationMs: Date.now() - startedAt,
    };
  }

  private async emitTerminalStep(emit: (step: StepDraft, options: { essential: boolean }) => Promise<void>, done: DonePayload, log: Logger) {
    const step: StepDraft =
      done.status === 'cancelled'
        ? { type: 'WORKFLOW_CANCELLED', status: 'ERROR', message: 'Workflow cancelled' }
        : {
            type: 'WORKFLOW_ERROR',
            status: 'ERROR',
            message: `Workflow failed: ${done.error?.message ?? 'unknown error'}`,
            details: { error: done.error },
          };
    try {
      await emit(step, { essential: true });
    } catch (error) {
      // A run ended by a run-lost sweep already has its terminal step, written by the sweeper.
      if (error instanceof RunLostError) log.info('the session was already ended as run_lost');
      else log.error({ err: error }, 'could not publish the terminal step');
    }
  }

  /** `signal_done`: called exactly once per run, whatever happened before. */
  private async signalDone(sessionId: string, done: DonePayload, log: Logger, runTrace?: Context): Promise<string | null> {
    const span = runTrace && startPublishSpan(runTrace, sessionId, 'done');
    try {
      const id = await this.options.bus.signalDone(sessionId, done, publishOptions(span));
      if (id !== null) span?.setAttribute(ATTR.eventId, id);
      span?.end();
      return id;
    } catch (error) {
      endSpan(span, 'bus_error');
      log.error({ err: error }, 'could not signal done');
      return null;
    }
  }
}

/** The run's span: a child of the request that started it, if that request was traced. */
function startRunSpan(sessionId: string, workflow: string, origin: RunOrigin): Span {
  return tracing.tracer.startSpan(
    `run ${workflow}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        [ATTR.sessionId]: sessionId,
        [ATTR.workflow]: workflow,
        ...(origin.requestId !== undefined && { [ATTR.requestId]: origin.requestId }),
      },
    },
    origin.trace,
  );
}

/** The bus's options for an entry published under `span`: its traceparent, when it is sampled. */
function publishOptions(span: Span | null | undefined): PublishOptions | undefined {
  const traceparent = span ? traceparentOf(span) : undefined;
  return traceparent === undefined ? undefined : { traceparent };
}

/** Ends a span that failed with `code` (a span that is `null`: tracing is off). */
function endSpan(span: Span | null | undefined, code: string): void {
  if (!span) return;
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  span.end();
}

/**
 * `promise`, marked as handled: a workflow that does not await an emit must not turn its
 * refusal into an unhandled rejection, which would end the process. Awaited, it still rejects.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** The event a step becomes: seq and timestamp from the run, the step's fields, in wire order. */
function toEvent(sessionId: string, seq: number, step: StepDraft): EventDraft {
  // JSON leaves out an absent agent_name or details, so one object shape serves every step.
  return {
    session_id: sessionId,
    seq,
    type: step.type,
    status: step.status,
    message: step.message,
    agent_name: step.agent_name,
    details: step.details,
    timestamp: isoNow(),
  };
}

let isoMs = 0;
let isoText = new Date(0).toISOString();

/** `new Date().toISOString()`, formatted once per millisecond however many events share it. */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}
