import { reconnectDelay, retryAfterMs } from '../../src/backoff';
import { isAfter } from '../../src/event-id';

describe('reconnectDelay', () => {
  it('starts at the server retry and doubles per failed attempt, up to the cap', () => {
    const none = () => 0;
    expect([1, 2, 3, 4, 5, 6].map((attempt) => reconnectDelay(attempt, 1000, 10000, none))).toEqual([
      1000, 2000, 4000, 8000, 10000, 10000,
    ]);
  });

  it('adds up to 50 % jitter and never goes below the server retry', () => {
    expect(reconnectDelay(1, 2000, 30000, () => 0.999999)).toBe(3000);
    expect(reconnectDelay(3, 2000, 30000, () => 0.5)).toBe(10000);
    for (let i = 0; i < 200; i++) {
      const delay = reconnectDelay(1, 2000, 30000, Math.random);
      expect(delay).toBeGreaterThanOrEqual(2000);
      expect(delay).toBeLessThanOrEqual(3000);
    }
  });

  it('honours a server retry above the cap', () => {
    expect(reconnectDelay(4, 60000, 30000, () => 0)).toBe(60000);
  });
});

describe('retryAfterMs', () => {
  it('reads delta seconds and HTTP dates', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(' 0 ')).toBe(0);
    const now = Date.parse('2026-11-21T18:00:00Z');
    expect(retryAfterMs('Sat, 21 Nov 2026 18:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('Sat, 21 Nov 2026 17:00:00 GMT', now)).toBe(0);
  });

  it('ignores what it cannot read', () => {
    expect(retryAfterMs(null)).toBeNull();
    expect(retryAfterMs('soon')).toBeNull();
    expect(retryAfterMs('-1')).toBeNull();
  });
});

describe('isAfter (event id order)', () => {
  it('orders <ms>-<n> ids numerically, not as text', () => {
    expect(isAfter('10-0', '9-0')).toBe(true);
    expect(isAfter('9-0', '10-0')).toBe(false);
    expect(isAfter('5-10', '5-9')).toBe(true);
    expect(isAfter('5-9', '5-9')).toBe(false);
    expect(isAfter('1732212345678-0', '1732212345677-99')).toBe(true);
    expect(isAfter('99999999999999999999-0', '9999999999999999999-5')).toBe(true);
  });

  it('takes any id after nothing, and an unorderable id only when it is not a repeat', () => {
    expect(isAfter('1-0', null)).toBe(true);
    expect(isAfter('abc', '1-0')).toBe(true);
    expect(isAfter('abc', 'abc')).toBe(false);
  });
});
