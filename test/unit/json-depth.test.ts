import { nestedDeeperThan } from '../../server/http/json-depth';

describe('nestedDeeperThan', () => {
  it('counts arrays and objects, not scalars', () => {
    expect(nestedDeeperThan('text', 0)).toBe(false);
    expect(nestedDeeperThan(null, 0)).toBe(false);
    expect(nestedDeeperThan([], 0)).toBe(true);
    expect(nestedDeeperThan([], 1)).toBe(false);
    expect(nestedDeeperThan({ a: { b: [1, 'x', null] } }, 3)).toBe(false);
    expect(nestedDeeperThan({ a: { b: [1, 'x', null] } }, 2)).toBe(true);
  });

  it('finds the one deep branch among shallow ones', () => {
    const value = { wide: Array.from({ length: 1000 }, (_, i) => ({ i })), deep: [[[[[]]]]] };
    expect(nestedDeeperThan(value, 6)).toBe(false);
    expect(nestedDeeperThan(value, 5)).toBe(true);
  });

  it('walks 200,000 levels without overflowing the stack', () => {
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)) as unknown;
    expect(nestedDeeperThan(deep, 32)).toBe(true);
    expect(nestedDeeperThan(deep, 200_000)).toBe(false);
  });
});
