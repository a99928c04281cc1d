import { parseTimeline } from '../../client-sdk/src';

const event = (seq: number, id = `1700000000000-${seq}`) =>
  `id: ${id}\ndata: ${JSON.stringify({ event_id: id, session_id: 's', seq, type: 'AGENT_MESSAGE', status: 'SUCCESS', message: `m${seq}`, timestamp: '2026-01-01T00:00:00.000Z' })}\n\n`;

const READY = 'retry: 2000\nevent: ready\ndata: {"session_id":"s","status":"running"}\n\n';
const DONE = 'event: done\nid: 1700000000001-0\ndata: {"status":"completed","result":{"n":2}}\n\n';

describe('parseTimeline', () => {
  it('sorts a finished stream into ready, events in order, gaps and done (with its id); comments and retry are no events', () => {
    const body = `${READY}event: gap\ndata: {"after":null,"first_available":"1700000000000-2"}\n\n${event(2)}: ping\n\n${event(3)}${DONE}`;
    expect(parseTimeline(body)).toEqual({
      ready: { session_id: 's', status: 'running' },
      events: [expect.objectContaining({ seq: 2, event_id: '1700000000000-2' }), expect.objectContaining({ seq: 3, message: 'm3' })],
      gaps: [{ after: null, first_available: '1700000000000-2' }],
      done: { id: '1700000000001-0', status: 'completed', result: { n: 2 } },
      expired: null,
    });
  });

  it('reads CRLF and CR line endings as the SSE spec does, a last lone CR included', () => {
    const lf = `${READY}${event(1)}${DONE}`;
    expect(parseTimeline(lf.replace(/\n/g, '\r\n'))).toEqual(parseTimeline(lf));
    expect(parseTimeline(lf.replace(/\n/g, '\r'))).toEqual(parseTimeline(lf));
  });

  it('gives expired for a stream whose session never started, and nothing for an empty body', () => {
    expect(parseTimeline(`${READY}: ping\n\nevent: expired\ndata: {"code":"idle_timeout"}\n\n`)).toMatchObject({
      events: [],
      done: null,
      expired: { code: 'idle_timeout' },
    });
    expect(parseTimeline('')).toEqual({ ready: null, events: [], done: null, gaps: [], expired: null });
  });

  it('skips events of a name it does not know, and drops a last event cut off before its blank line', () => {
    const parsed = parseTimeline(`${READY}event: future\ndata: {}\n\n${event(1)}id: 1700000000000-9\ndata: {"seq":9`);
    expect(parsed.events.map((e) => e.seq)).toEqual([1]);
  });

  it('says what is wrong with what it was given', () => {
    expect(() => parseTimeline(undefined as never)).toThrow(/expected the response body as text, got undefined/);
    expect(() => parseTimeline({} as never)).toThrow(/got object/);
    expect(() => parseTimeline(`${READY}event: done\ndata: {oops\n\n`)).toThrow(/the data of event: done is not JSON: \{oops/);
  });
});
