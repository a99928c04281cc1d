import { TIMELINE_EVENT_TYPES, TimelineClient } from '../../src';
import type { TimelineEvent, TimelineEventOf, TimelineEventType } from '../../src/types';
import { ModelError, type Model } from '../../../server/models/model';
import { nextEvent, record, settle } from '../../../test/helpers/sdk-run';
import { startService, synthetic, type RunningService } from '../../../test/helpers/service';

/**
 * The event union (client-sdk/src/types.ts) against what a real service emits: every type the
 * built-in workflows and the run produce, each with the details fields its type declares,
 * no undeclared field and no missing required one. The table is typed against the union, so a
 * field named here exists in the types; a field the server adds fails here until typed.
 */

/** The fields of `T`'s details, across the shapes of a union (AGENT_MESSAGE has two). */
type DetailKey<T extends TimelineEventType> = TimelineEventOf<T>['details'] extends infer D ? (D extends object ? keyof D : never) : never;

interface Shape<T extends TimelineEventType> {
  required: Array<DetailKey<T>>;
  optional: Array<DetailKey<T>>;
}

/** Each type's details shapes; `absent`: the details may be left out; `null`: never any. */
const DETAILS: { [T in TimelineEventType]: { shapes: Array<Shape<T>>; absent: boolean } | null } = {
  WORKFLOW_START: { shapes: [{ required: ['workflow', 'project_id', 'query'], optional: [] }], absent: false },
  ROUTER_THOUGHT: { shapes: [{ required: ['route', 'reason', 'confidence'], optional: ['usage'] }], absent: false },
  AGENT_START: { shapes: [{ required: [], optional: ['turn'] }], absent: true },
  AGENT_TOKEN: { shapes: [{ required: ['text', 'chars'], optional: [] }], absent: false },
  AGENT_MESSAGE: {
    shapes: [
      { required: ['turn', 'text', 'usage'], optional: [] },
      { required: ['i', 'sent_at', 'sent_mono_ms', 'pad'], optional: [] },
    ],
    absent: false,
  },
  TOOL_CALL: { shapes: [{ required: ['tool', 'input', 'output'], optional: [] }], absent: false },
  AGENT_COMPLETE: { shapes: [{ required: ['text', 'usage'], optional: [] }], absent: false },
  WORKFLOW_COMPLETE: { shapes: [{ required: ['result', 'duration_ms'], optional: [] }], absent: false },
  WORKFLOW_ERROR: { shapes: [{ required: ['error'], optional: [] }], absent: false },
  WORKFLOW_CANCELLED: null,
};

/** The statuses the union pins for the run's own events. */
const STATUS: { [T in TimelineEventType]?: TimelineEventOf<T>['status'] } = {
  WORKFLOW_START: 'IN_PROGRESS',
  WORKFLOW_COMPLETE: 'SUCCESS',
  WORKFLOW_ERROR: 'ERROR',
  WORKFLOW_CANCELLED: 'ERROR',
};

/** What in `event` the union does not describe; empty when it fits. */
function misfit(event: TimelineEvent): string[] {
  const problems: string[] = [];
  const where = `#${event.seq} ${event.type}`;
  const status = STATUS[event.type];
  if (status !== undefined && event.status !== status) problems.push(`${where}: status ${event.status}, typed ${status}`);
  const spec = DETAILS[event.type] as { shapes: Array<{ required: string[]; optional: string[] }>; absent: boolean } | null;
  const details = event.details as Record<string, unknown> | undefined;
  if (details === undefined) {
    if (spec !== null && !spec.absent) problems.push(`${where}: details missing`);
    return problems;
  }
  if (spec === null) return [...problems, `${where}: details ${JSON.stringify(details)} where none are typed`];
  const keys = Object.keys(details);
  const fits = spec.shapes.some(
    (shape) => shape.required.every((key) => keys.includes(key)) && keys.every((key) => [...shape.required, ...shape.optional].includes(key)),
  );
  if (!fits) problems.push(`${where}: details fields [${keys.join(', ')}] fit none of ${JSON.stringify(spec.shapes)}`);
  return problems;
}

/** A model provider that fails every call, as an overloaded Anthropic API does. */
const failingModel: Model = {
  name: 'failing',
  stream: () => Promise.reject(new ModelError('model_overloaded', 'The model is overloaded')),
};

describe('the event union describes what the service emits', () => {
  const services: RunningService[] = [];
  afterAll(async () => {
    await Promise.all(services.map((service) => service.close()));
  });

  async function eventsOf(
    request: Parameters<TimelineClient['execute']>[0],
    options: { model?: Model; cancelAtSeq?: number } = {},
  ): Promise<TimelineEvent[]> {
    const service = await startService({}, options.model ? { model: options.model } : {});
    services.push(service);
    const run = new TimelineClient({ baseUrl: service.url }).execute(request);
    const seen = record(run);
    if (options.cancelAtSeq !== undefined) {
      await nextEvent(run, (event) => event.seq === options.cancelAtSeq, `event ${options.cancelAtSeq}`);
      await run.cancel();
    }
    await settle(run);
    expect(seen.done).toHaveLength(1);
    return seen.events;
  }

  it('fits every event of every built-in workflow and ending, and meets every type', async () => {
    const runs = await Promise.all([
      // The router decides (ROUTER_THOUGHT with usage), a discussion follows: turns and a moderator.
      eventsOf({ project_id: 'p', query: 'Compare Redis Streams and Kafka', params: { turns: 2 } }),
      eventsOf({ project_id: 'p', query: 'What is a Redis Stream?', params: { route: 'researcher' } }),
      eventsOf({ project_id: 'p', query: 'Write a haiku about queues', params: { route: 'writer' } }),
      eventsOf(synthetic(undefined, { events: 3, payload_bytes: 8 })),
      eventsOf(synthetic(undefined, { events: 1000, interval_ms: 20 }), { cancelAtSeq: 3 }),
      eventsOf({ project_id: 'p', query: 'Write a haiku', params: { route: 'writer' } }, { model: failingModel }),
    ]);
    const events = runs.flat();
    expect(events.flatMap(misfit)).toEqual([]);
    expect([...new Set(events.map((event) => event.type))].sort()).toEqual([...TIMELINE_EVENT_TYPES].sort());
    // Both shapes of AGENT_MESSAGE and both of ROUTER_THOUGHT (with and without usage) were seen.
    const messages = events.filter((event) => event.type === 'AGENT_MESSAGE');
    expect(new Set(messages.map((event) => 'i' in event.details))).toEqual(new Set([true, false]));
    const thoughts = events.filter((event) => event.type === 'ROUTER_THOUGHT');
    expect(new Set(thoughts.map((event) => event.details.usage === undefined))).toEqual(new Set([true, false]));
    const failed = events.find((event) => event.type === 'WORKFLOW_ERROR');
    expect(failed?.details.error.code).toBe('model_overloaded');
  });
});
