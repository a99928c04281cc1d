import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { ExecuteAccepted, ExecuteResult } from '../../client-sdk/src/types';
import { SessionConflictError, TooManyCallerRunsError, TooManyRunsError, type RunManager } from '../runs/run-manager';
import { EventTooLargeError, PublishBacklogFullError } from '../runs/publish-budget';
import type { TimelineBus } from '../timeline/bus';
import type { WorkflowRegistry } from '../workflows/registry';
import { callerOf } from './auth';
import { HttpError, sendError } from './errors';
import { parseExecuteRequest } from './execute-request';
import { requestScope } from './request-scope';
import { bindSessionAccess } from './session-access';

export interface ExecuteRouteDeps {
  runs: RunManager;
  registry: WorkflowRegistry;
  bus: TimelineBus;
  /** `Retry-After` of a `503 too_many_runs` or a `429 too_many_caller_runs`, in seconds. */
  retryAfterS: number;
}

function wantsAsync(prefer: string | undefined): boolean {
  return (prefer ?? '')
    .split(/[,;]/)
    .some((token) => token.trim().toLowerCase() === 'respond-async');
}

/** `POST /execute`: claims the session, runs the workflow, answers at the end or at once (202). */
export function executeRoute({ runs, registry, bus, retryAfterS }: ExecuteRouteDeps): RequestHandler {
  return async (req, res) => {
    const command = parseExecuteRequest(req.body, registry);
    const sessionId = command.sessionId ?? randomUUID();
    const scope = requestScope(res);
    scope.sessionId = sessionId;
    const caller = callerOf(res);
    // Binds first, so a stream another caller opened on this id meanwhile wins or loses atomically.
    await bindSessionAccess(bus, sessionId, caller);
    let run;
    try {
      // With auth off, a caller is a client address (TRUST_PROXY says whose, behind a balancer).
      const limitKey = caller !== null ? `caller:${caller}` : `address:${req.ip ?? 'unknown'}`;
      run = await runs.start(sessionId, command.workflow, command.input, {
        caller,
        limitKey,
        requestId: scope.id,
        receivedAt: scope.receivedAt,
        trace: scope.trace,
      });
    } catch (error) {
      if (error instanceof EventTooLargeError) throw new HttpError(error.code, error.message);
      if (error instanceof PublishBacklogFullError) {
        throw new HttpError(error.code, error.message, { headers: { 'Retry-After': String(retryAfterS) } });
      }
      if (error instanceof TooManyCallerRunsError) {
        throw new HttpError('too_many_caller_runs', error.message, { headers: { 'Retry-After': String(retryAfterS) } });
      }
      if (error instanceof TooManyRunsError) {
        throw new HttpError('too_many_runs', error.message, { headers: { 'Retry-After': String(retryAfterS) } });
      }
      if (error instanceof SessionConflictError) {
        throw new HttpError('session_conflict', `Session ${sessionId} is already running or finished`, {
          sessionId,
        });
      }
      throw error;
    }

    if (wantsAsync(req.get('prefer'))) {
      // Relative to where the app is mounted (`req.baseUrl` is empty at the root).
      const accepted: ExecuteAccepted = { session_id: sessionId, stream_url: `${req.baseUrl}/timeline/stream/${sessionId}` };
      res.status(202).setHeader('Preference-Applied', 'respond-async').json(accepted);
      return;
    }

    // The POST client may leave; the run goes on (the stream is the primary channel).
    const summary = await run.finished;
    if (res.writableEnded || res.destroyed) return;
    if (summary.status === 'failed') {
      const code = summary.failure?.code ?? 'internal_error';
      const message = summary.error?.message ?? 'The workflow failed';
      sendError(res, new HttpError(code, message, { sessionId }));
      return;
    }
    const body: ExecuteResult = {
      session_id: sessionId,
      status: summary.status,
      result: summary.result ?? null,
      event_count: summary.eventCount,
      duration_ms: summary.durationMs,
    };
    res.status(200).json(body);
  };
}
