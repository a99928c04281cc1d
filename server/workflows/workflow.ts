import type { Logger } from 'pino';
import type { z } from 'zod';
import type { TimelineEventStatus, TimelineEventType } from '../../client-sdk/src/types';
import type { Model } from '../models/model';

/** A step as a workflow emits it; the run adds session id, seq, timestamp and event id. */
export interface StepDraft {
  type: TimelineEventType;
  status: TimelineEventStatus;
  message: string;
  agent_name?: string;
  details?: Record<string, unknown>;
}

export interface WorkflowInput<Params> {
  project_id: string;
  query: string;
  context: Array<{ type: string; id: string; [key: string]: unknown }>;
  params: Params;
}

export interface WorkflowContext {
  sessionId: string;
  /** Fires on cancel and on shutdown; pass it to every model call and wait. */
  signal: AbortSignal;
  model: Model;
  /** Publishes a step; resolves once it is in the session's log. Steps keep emit order. */
  emit(step: StepDraft): Promise<void>;
  log: Logger;
}

/**
 * A named, registered workflow. The run itself emits `WORKFLOW_START` and the terminal
 * `WORKFLOW_COMPLETE` / `WORKFLOW_ERROR` / `WORKFLOW_CANCELLED`; a workflow emits the steps
 * in between and returns its result (any JSON value).
 */
export interface Workflow<Params = unknown> {
  readonly name: string;
  readonly description: string;
  /** Validates `params` of `POST /execute`; failures answer `400 invalid_request`. */
  readonly params: z.ZodType<Params>;
  run(input: WorkflowInput<Params>, ctx: WorkflowContext): Promise<unknown>;
}
