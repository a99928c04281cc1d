import { createAgentsWorkflow } from './agents';
import { createSyntheticWorkflow } from './synthetic';
import type { Workflow } from './workflow';

/** Workflows by name, as `POST /execute` selects them. */
export class WorkflowRegistry {
  private readonly workflows = new Map<string, Workflow>();

  /** Throws when a workflow of the same name is already registered. */
  register(workflow: Workflow): this {
    if (this.workflows.has(workflow.name)) {
      throw new Error(`Workflow "${workflow.name}" is already registered`);
    }
    this.workflows.set(workflow.name, workflow);
    return this;
  }

  get(name: string): Workflow | undefined {
    return this.workflows.get(name);
  }

  names(): string[] {
    return [...this.workflows.keys()];
  }
}

export interface DefaultRegistryOptions {
  /** Upper bound of the synthetic workflow's `params.events` (`MAX_EVENTS_PER_SESSION`). */
  maxEventsPerSession: number;
}

export function createDefaultRegistry(options: DefaultRegistryOptions): WorkflowRegistry {
  return new WorkflowRegistry()
    .register(createAgentsWorkflow())
    .register(createSyntheticWorkflow({ maxEvents: options.maxEventsPerSession }));
}
