import type { z } from 'zod';
import { executeRequestSchema } from '../contract/wire-schemas';
import type { WorkflowRegistry } from '../workflows/registry';
import type { Workflow, WorkflowInput } from '../workflows/workflow';
import { HttpError } from './errors';
import { nestedDeeperThan } from './json-depth';

/** How deep any field of the body may nest (`context`'s items are at depth 2). */
export const MAX_BODY_DEPTH = 32;
/** `context` as JSON, at most: it goes into every model prompt of the run. */
export const MAX_CONTEXT_BYTES = 64 * 1024;

export interface ExecuteCommand {
  sessionId: string | null;
  workflow: Workflow<unknown>;
  input: WorkflowInput<unknown>;
}

function describe(issue: z.core.$ZodIssue, prefix = ''): string {
  const path = issue.path.map(String).join('.');
  const field = path === '' ? prefix.replace(/\.$/, '') : prefix + path;
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((key) => (field ? `${field}.${key}` : key));
    return `unknown field${keys.length > 1 ? 's' : ''} ${keys.join(', ')}`;
  }
  return field ? `${field}: ${issue.message}` : issue.message;
}

/** Validates a `POST /execute` body into a runnable command; `400 invalid_request` names the field. */
export function parseExecuteRequest(body: unknown, registry: WorkflowRegistry): ExecuteCommand {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError('invalid_request', 'Request body must be a JSON object');
  }
  // Before anything walks the body recursively (the validator, a workflow's JSON.stringify).
  for (const [field, value] of Object.entries(body)) {
    if (nestedDeeperThan(value, MAX_BODY_DEPTH)) {
      throw new HttpError('invalid_request', `${field}: nested deeper than ${MAX_BODY_DEPTH} levels`);
    }
  }
  const parsed = executeRequestSchema.safeParse(body);
  if (!parsed.success) {
    throw new HttpError('invalid_request', describe(parsed.error.issues[0]));
  }
  const request = parsed.data;
  if (request.context !== undefined && Buffer.byteLength(JSON.stringify(request.context)) > MAX_CONTEXT_BYTES) {
    throw new HttpError('invalid_request', `context: larger than ${MAX_CONTEXT_BYTES} bytes of JSON`);
  }
  const name = request.workflow ?? 'agents';
  const workflow = registry.get(name);
  if (!workflow) {
    throw new HttpError(
      'invalid_request',
      `workflow: unknown workflow "${name}" (registered: ${registry.names().join(', ')})`,
    );
  }
  const params = workflow.params.safeParse(request.params ?? {});
  if (!params.success) {
    throw new HttpError('invalid_request', describe(params.error.issues[0], 'params.'));
  }
  return {
    sessionId: request.session_id?.toLowerCase() ?? null,
    workflow,
    input: {
      project_id: request.project_id,
      query: request.query,
      context: request.context ?? [],
      params: params.data,
    },
  };
}
