import type { z } from 'zod';
import { executeRequestSchema } from '../contract/wire-schemas';
import type { WorkflowRegistry } from '../workflows/registry';
import type { Workflow, WorkflowInput } from '../workflows/workflow';
import { HttpError } from './errors';

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
  const parsed = executeRequestSchema.safeParse(body);
  if (!parsed.success) {
    throw new HttpError('invalid_request', describe(parsed.error.issues[0]));
  }
  const request = parsed.data;
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
