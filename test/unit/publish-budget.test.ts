import { EventTooLargeError, PublishBacklogFullError, PublishBudget } from '../../server/runs/publish-budget';
import type { EventDraft } from '../../server/timeline/bus';

const event = (message: string): EventDraft => ({
  session_id: '00000000-0000-4000-8000-000000000000',
  seq: 2,
  type: 'AGENT_MESSAGE',
  status: 'IN_PROGRESS',
  message,
  timestamp: '2026-01-01T00:00:00.000Z',
});
const bytesOf = (draft: EventDraft) => Buffer.byteLength(JSON.stringify(draft));

describe('PublishBudget', () => {
  it('measures an event as its JSON in UTF-8 bytes, not characters', () => {
    const budget = new PublishBudget({ maxEventBytes: 1000, maxBacklogBytes: 10_000 });
    const ascii = event('x'.repeat(100));
    const wide = event('€'.repeat(100));
    expect(budget.take(ascii)).toBe(bytesOf(ascii));
    expect(budget.take(wide)).toBe(bytesOf(ascii) + 200);
    expect(budget.pendingBytes).toBe(bytesOf(ascii) * 2 + 200);
  });

  it('refuses an event over maxEventBytes, counting nothing', () => {
    const limit = bytesOf(event('x'.repeat(100)));
    const budget = new PublishBudget({ maxEventBytes: limit, maxBacklogBytes: 10_000 });
    expect(budget.take(event('x'.repeat(100)))).toBe(limit);
    expect(() => budget.take(event('x'.repeat(101)))).toThrow(EventTooLargeError);
    expect(() => budget.take(event('x'.repeat(101)), { essential: true })).toThrow(/MAX_EVENT_BYTES/);
    expect(budget.pendingBytes).toBe(limit);
  });

  it('refuses what would pass the backlog until released, except an essential event', () => {
    const size = bytesOf(event('a'));
    const budget = new PublishBudget({ maxEventBytes: size, maxBacklogBytes: size * 2 });
    expect(budget.hasRoom).toBe(true);
    budget.take(event('a'));
    expect(budget.hasRoom).toBe(true);
    budget.take(event('b'));
    expect(budget.hasRoom).toBe(false);
    expect(() => budget.take(event('c'))).toThrow(PublishBacklogFullError);
    expect(budget.take(event('c'), { essential: true })).toBe(size);
    for (let i = 0; i < 3; i++) budget.release(size);
    expect(budget.pendingBytes).toBe(0);
    expect(budget.hasRoom).toBe(true);
  });
});
