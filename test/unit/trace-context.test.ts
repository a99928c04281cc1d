import { parseTraceparent } from '../../server/telemetry/trace-context';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';

describe('parseTraceparent (W3C trace context)', () => {
  it('reads a valid header, sampled or not, as a remote parent', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: 1, isRemote: true });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.traceFlags).toBe(0);
    // A later version may add fields; its first four are read the same way.
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-extra`)?.spanId).toBe(SPAN);
  });

  it.each([
    ['', 'empty'],
    [`ff-${TRACE}-${SPAN}-01`, 'the forbidden version ff'],
    [`00-${TRACE}-${SPAN}-01-extra`, 'extra fields in version 00'],
    [`00-${'0'.repeat(32)}-${SPAN}-01`, 'an all-zero trace id'],
    [`00-${TRACE}-${'0'.repeat(16)}-01`, 'an all-zero span id'],
    [`00-${TRACE.toUpperCase()}-${SPAN}-01`, 'upper-case hex'],
    [`00-${TRACE}-${SPAN}`, 'no flags'],
    [`00-${TRACE.slice(1)}-${SPAN}-01`, 'a short trace id'],
  ])('rejects %j (%s)', (header) => {
    expect(parseTraceparent(header)).toBeNull();
  });
});
