import { reconnectDelay, reconnectsWithin } from '../../server/timeline/redis-bus';

describe('RedisBus reconnect policy', () => {
  it('waits 50 ms more before each attempt, at most 1 s', () => {
    expect([1, 2, 10, 20, 21, 100].map(reconnectDelay)).toEqual([50, 100, 500, 1000, 1000, 1000]);
  });

  it('turns BUS_OUTAGE_MS into the number of reconnect attempts whose delays cover it', () => {
    // 50 + 100 + … + 1000 = 10500 ms after 20 attempts, then 1 s per attempt.
    expect(reconnectsWithin(30000)).toBe(40);
    expect(reconnectsWithin(10500)).toBe(20);
    expect(reconnectsWithin(10501)).toBe(21);
    expect(reconnectsWithin(1)).toBe(1);
    expect(reconnectsWithin(150)).toBe(2);
  });
});
