import { z } from 'zod';
import { stepDraftSchema } from '../contract/wire-schemas';
import type { StepDraft, Workflow, WorkflowContext, WorkflowInput } from './workflow';

/** Workflow params without a schema of their own: any JSON object (`POST /execute` checks that much). */
export type JsonObject = Record<string, unknown>;

/** What `defineWorkflow` takes. */
export interface WorkflowDefinition<Params> {
  /** The name `POST /execute` selects it by (its `workflow` field): 1 to 128 characters. */
  name: string;
  /** One line saying what it does. Defaults to `''`. */
  description?: string;
  /**
   * A zod schema for `params` of `POST /execute` (an object schema; a field with a default
   * may be left out). A body it rejects gets `400 invalid_request` naming the field, and the
   * run's `input.params` has its output type. Defaults to any JSON object.
   */
  params?: z.ZodType<Params>;
  /**
   * Runs once per `POST /execute`. Publish steps with `ctx.emit` (await each: it resolves once
   * the step is in the session's log); the returned value (any JSON value) is the run's
   * result. The run itself emits `WORKFLOW_START` before and `WORKFLOW_COMPLETE` (or
   * `WORKFLOW_ERROR` / `WORKFLOW_CANCELLED`) after. A throw fails the run: a `ModelError` with
   * its code, anything else as `internal_error`, its message kept out of every answer. Stop
   * when `ctx.signal` aborts (a cancel, or a shutdown past its grace).
   */
  run(input: WorkflowInput<Params>, ctx: WorkflowContext): unknown;
}

const NAME = z.string().min(1).max(128);
const anyJsonObject: z.ZodType<JsonObject> = z.record(z.string(), z.unknown());

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.map(String).join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

/**
 * A workflow to hand to `createService({ workflows })`. The steps it emits are checked
 * against the event model, so a wrong one fails the run instead of reaching clients.
 */
export function defineWorkflow<Params = JsonObject>(definition: WorkflowDefinition<Params>): Workflow<Params> {
  if (!NAME.safeParse(definition.name).success) {
    throw new TypeError(`defineWorkflow: name must be a string of 1 to 128 characters, got ${JSON.stringify(definition.name)}`);
  }
  if (typeof definition.run !== 'function') throw new TypeError(`defineWorkflow("${definition.name}"): run must be a function`);
  // Without a schema, Params is its default, JsonObject.
  const params = definition.params ?? (anyJsonObject as unknown as z.ZodType<Params>);
  if (typeof params.safeParse !== 'function') {
    throw new TypeError(`defineWorkflow("${definition.name}"): params must be a zod schema`);
  }
  return {
    name: definition.name,
    description: definition.description ?? '',
    params,
    async run(input: WorkflowInput<Params>, ctx: WorkflowContext): Promise<unknown> {
      const emit = (step: StepDraft): Promise<void> => {
        const checked = stepDraftSchema.safeParse(step);
        if (!checked.success) {
          return Promise.reject(new TypeError(`workflow "${definition.name}" emitted a bad step: ${describe(checked.error)}`));
        }
        return ctx.emit(checked.data);
      };
      return definition.run(input, { ...ctx, emit });
    },
  };
}
