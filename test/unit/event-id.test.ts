import { compareEventIds, EventIdGenerator, isEventId } from '../../server/timeline/event-id';

const MAX_U64 = '18446744073709551615';
const OVER_U64 = '18446744073709551616';

describe('isEventId', () => {
  it.each(['0-0', '1-0', '1732212345678-0', '1732212345678-42', `${MAX_U64}-${MAX_U64}`, `0-${MAX_U64}`])(
    'accepts canonical %s',
    (id) => {
      expect(isEventId(id)).toBe(true);
    },
  );

  it.each([
    '',
    '1',
    '1-',
    '-1',
    '1-2-3',
    '01-0',
    '1-01',
    '00-0',
    '1.5-0',
    ' 1-0',
    '1-0 ',
    '+1-0',
    '-1-0',
    'abc-1',
    '1-abc',
    '1_0',
    '1-0\n',
    `${OVER_U64}-0`,
    `0-${OVER_U64}`,
    '123456789012345678901-0',
  ])('rejects %j', (id) => {
    expect(isEventId(id)).toBe(false);
  });
});

describe('compareEventIds', () => {
  it('compares numerically, not as text', () => {
    expect(compareEventIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareEventIds('10-0', '9-0')).toBeGreaterThan(0);
    expect(compareEventIds('5-9', '5-10')).toBeLessThan(0);
    expect(compareEventIds('5-10', '5-9')).toBeGreaterThan(0);
    expect(compareEventIds('99-99', '100-0')).toBeLessThan(0);
  });

  it('orders by milliseconds first, then by the counter', () => {
    expect(compareEventIds('1-999', '2-0')).toBeLessThan(0);
    expect(compareEventIds('2-0', '2-1')).toBeLessThan(0);
  });

  it('is zero for equal ids', () => {
    expect(compareEventIds('1732212345678-3', '1732212345678-3')).toBe(0);
  });

  it('puts null (the very start) before every id', () => {
    expect(compareEventIds(null, '0-0')).toBeLessThan(0);
    expect(compareEventIds('0-0', null)).toBeGreaterThan(0);
    expect(compareEventIds(null, null)).toBe(0);
  });

  it('handles 64-bit values beyond Number precision', () => {
    expect(compareEventIds(`${MAX_U64}-0`, '18446744073709551614-0')).toBeGreaterThan(0);
    expect(compareEventIds('0-18446744073709551614', `0-${MAX_U64}`)).toBeLessThan(0);
  });

  it('sorts a shuffled list the way BigInt order does', () => {
    const ids = ['10-0', '9-0', '9-10', '9-9', '100-1', '100-0', '1-0', '0-5', '18446744073709551615-0', '2-11'];
    const byBigInt = [...ids].sort((a, b) => {
      const [am, an] = a.split('-').map(BigInt);
      const [bm, bn] = b.split('-').map(BigInt);
      return am !== bm ? (am < bm ? -1 : 1) : an < bn ? -1 : an > bn ? 1 : 0;
    });
    expect([...ids].sort(compareEventIds)).toEqual(byBigInt);
  });
});

describe('EventIdGenerator', () => {
  const parse = (id: string) => id.split('-').map(Number);

  it('uses the clock for the milliseconds and starts the counter at 0', () => {
    const ids = new EventIdGenerator();
    expect(ids.next(1000)).toBe('1000-0');
    expect(ids.next(1001)).toBe('1001-0');
  });

  it('counts up within one millisecond', () => {
    const ids = new EventIdGenerator();
    const made = [ids.next(5000), ids.next(5000), ids.next(5000)];
    expect(made).toEqual(['5000-0', '5000-1', '5000-2']);
    expect(ids.next(5001)).toBe('5001-0');
  });

  it('stays increasing when the clock goes backwards', () => {
    const ids = new EventIdGenerator();
    const made = [ids.next(9000), ids.next(8000), ids.next(100), ids.next(9000), ids.next(9001)];
    expect(made).toEqual(['9000-0', '9000-1', '9000-2', '9000-3', '9001-0']);
  });

  it('makes canonical, strictly increasing ids over an erratic clock', () => {
    const ids = new EventIdGenerator();
    const clock = [10, 10, 12, 11, 11, 12, 30, 2, 31, 31, 31, 29, 40];
    const made = clock.map((now) => ids.next(now));
    for (const id of made) expect(isEventId(id)).toBe(true);
    for (let i = 1; i < made.length; i++) {
      expect(compareEventIds(made[i - 1], made[i])).toBeLessThan(0);
      expect(parse(made[i])[0]).toBeGreaterThanOrEqual(parse(made[i - 1])[0]);
    }
  });

  it('defaults to the wall clock', () => {
    const before = Date.now();
    const [ms] = parse(new EventIdGenerator().next());
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(Date.now());
  });
});
