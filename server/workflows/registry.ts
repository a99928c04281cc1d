import { createAgentsWorkflow } from './agents';
import { createSyntheticWorkflow } from './synthetic';
import type { Workflow } from './workflow';

/** Workflows by name, as `POST /execute` selects them. */
export class WorkflowRegistry {
  private readonly workflows = new Map<string, Workflow>();

  /** Throws when a workflow of the same name is already registered. */
  register(workflow: Workflow): this {
    if (typeof workflow?.name !== 'string' || typeof workflow.run !== 'function' || typeof workflow.params?.safeParse !== 'function') {
      throw new TypeError('A workflow needs a name, a params schema and a run function: make it with defineWorkflow');
    }
    if (this.workflows.has(workflow.name)) {
      throw new Error(
        `A workflow named "${workflow.name}" is already registered (registered: ${this.names().join(', ')}); give it another name`,
      );
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
  /**
   * Registers the `synthetic` workflow (`ENABLE_SYNTHETIC=1`). It is a load-testing tool: any
   * caller could make it publish as much as the budgets allow, so it is off unless asked for.
   */
  enableSynthetic: boolean;
  /** Upper bound of the synthetic workflow's `params.events` (`MAX_EVENTS_PER_SESSION`). */
  maxEventsPerSession: number;
  /** `MAX_EVENT_BYTES`: bounds the synthetic workflow's `params.payload_bytes` too. Defaults to 128 KiB. */
  maxEventBytes?: number;
}

/** `agents`, and `synthetic` when enabled. */
export function createDefaultRegistry(options: DefaultRegistryOptions): WorkflowRegistry {
  const registry = new WorkflowRegistry().register(createAgentsWorkflow());
  if (options.enableSynthetic) {
    registry.register(createSyntheticWorkflow({ maxEvents: options.maxEventsPerSession, maxEventBytes: options.maxEventBytes }));
  }
  return registry;
}
