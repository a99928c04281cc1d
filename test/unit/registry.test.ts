import { z } from 'zod';
import { WorkflowRegistry, createDefaultRegistry } from '../../server/workflows/registry';
import type { Workflow } from '../../server/workflows/workflow';

function stubWorkflow(name: string): Workflow<Record<string, never>> {
  return { name, description: `${name} workflow`, params: z.strictObject({}), run: async () => name };
}

describe('WorkflowRegistry', () => {
  it('finds registered workflows by name', () => {
    const registry = new WorkflowRegistry();
    const a = stubWorkflow('a');
    const b = stubWorkflow('b');
    registry.register(a).register(b);
    expect(registry.get('a')).toBe(a);
    expect(registry.get('b')).toBe(b);
    expect(registry.get('c')).toBeUndefined();
    expect(registry.names()).toEqual(['a', 'b']);
  });

  it('refuses a second workflow with the same name', () => {
    const registry = new WorkflowRegistry().register(stubWorkflow('a'));
    const duplicate = stubWorkflow('a');
    expect(() => registry.register(duplicate)).toThrow('A workflow named "a" is already registered (registered: a)');
    expect(registry.get('a')).not.toBe(duplicate);
  });
});

describe('createDefaultRegistry', () => {
  const registry = createDefaultRegistry({ enableSynthetic: true, maxEventsPerSession: 250 });

  it('registers agents and synthetic', () => {
    expect(registry.names().sort()).toEqual(['agents', 'synthetic']);
    expect(registry.get('agents')?.name).toBe('agents');
  });

  it('registers agents only unless synthetic is enabled (ENABLE_SYNTHETIC=1)', () => {
    expect(createDefaultRegistry({ enableSynthetic: false, maxEventsPerSession: 250 }).names()).toEqual(['agents']);
  });

  it('bounds synthetic payload_bytes so an event fits in maxEventBytes (65536 at most)', () => {
    const small = createDefaultRegistry({ enableSynthetic: true, maxEventsPerSession: 250, maxEventBytes: 4096 }).get('synthetic')!;
    expect(small.params.safeParse({ payload_bytes: 3072 }).success).toBe(true);
    expect(small.params.safeParse({ payload_bytes: 3073 }).success).toBe(false);
    const large = createDefaultRegistry({ enableSynthetic: true, maxEventsPerSession: 250, maxEventBytes: 1024 * 1024 }).get('synthetic')!;
    expect(large.params.safeParse({ payload_bytes: 65536 }).success).toBe(true);
    expect(large.params.safeParse({ payload_bytes: 65537 }).success).toBe(false);
  });

  it('bounds synthetic events by maxEventsPerSession', () => {
    const synthetic = registry.get('synthetic')!;
    expect(synthetic.params.safeParse({ events: 250 }).success).toBe(true);
    expect(synthetic.params.safeParse({ events: 251 }).success).toBe(false);
  });
});
