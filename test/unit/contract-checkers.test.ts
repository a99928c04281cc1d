import { asyncApiViolations } from '../helpers/asyncapi';
import { openApiViolations, type ObservedResponse } from '../helpers/openapi';

/** The checks the contract tests run on live answers, shown to fail on answers that break the documents. */

const SESSION = '4b6f0d3e-1c2a-4f5e-9a8b-7c6d5e4f3a2b';
const json = (value: unknown) => JSON.stringify(value);
const answer = (over: Partial<ObservedResponse>): ObservedResponse => ({
  method: 'POST',
  path: '/execute',
  status: 200,
  headers: { 'content-type': 'application/json; charset=utf-8' },
  text: json({ session_id: SESSION, status: 'completed', result: null, event_count: 2, duration_ms: 1 }),
  ...over,
});

describe('the docs/openapi.yaml check', () => {
  it('passes a conforming answer', () => {
    expect(openApiViolations(answer({}))).toEqual([]);
  });

  it.each<[string, Partial<ObservedResponse>, RegExp]>([
    ['a body missing a field', { text: json({ session_id: SESSION, status: 'completed', result: null, duration_ms: 1 }) }, /event_count/],
    ['a body with a field too many', { text: json({ session_id: SESSION, status: 'completed', result: null, event_count: 2, duration_ms: 1, x: 1 }) }, /additional/],
    ['an undeclared status', { status: 418 }, /does not declare status 418/],
    ['an error code the status does not have', { status: 409, text: json({ error: { code: 'session_finished', message: 'm' } }) }, /allowed values/],
    ['an undeclared content type', { headers: { 'content-type': 'text/html' } }, /content type text\/html not declared/],
    ['a missing required header', { status: 202, text: json({ session_id: SESSION, stream_url: '/x' }) }, /missing required header Preference-Applied/],
    ['a wrong 404 for an unknown path', { method: 'GET', path: '/nope', status: 404, text: json({ error: { code: 'session_not_found', message: 'm' } }) }, /expected 404 not_found/],
    ['a 405 without Allow', { method: 'DELETE', status: 405, text: json({ error: { code: 'method_not_allowed', message: 'm' } }) }, /405 without Allow/],
  ])('flags %s', (_label, over, problem) => {
    expect(openApiViolations(answer(over)).join('\n')).toMatch(problem);
  });

  it('checks the stream route: its headers and a body for 204', () => {
    const stream = (over: Partial<ObservedResponse>) =>
      answer({ method: 'GET', path: `/timeline/stream/${SESSION}`, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' }, text: 'retry: 1\n\n', ...over });
    expect(openApiViolations(stream({}))).toEqual([]);
    expect(openApiViolations(stream({ headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } })).join('\n')).toMatch(
      /X-Accel-Buffering[\s\S]*Cache-Control|Cache-Control[\s\S]*X-Accel-Buffering/,
    );
    expect(openApiViolations(stream({ status: 204, headers: {}, text: 'x' })).join('\n')).toMatch(/declares no body/);
  });
});

describe('the docs/asyncapi.yaml check', () => {
  const ready = `event: ready\ndata: ${json({ session_id: SESSION, status: 'waiting' })}\n\n`;

  it('passes conforming frames and names them', () => {
    expect(asyncApiViolations(`retry: 2000\n${ready}: ping\n\nevent: expired\ndata: {"code":"idle_timeout"}\n\n`)).toEqual({
      seen: ['ready', 'keepAlive', 'expired'],
      problems: [],
    });
  });

  it.each<[string, string, RegExp]>([
    ['an unknown event', 'event: error\ndata: {}\n\n', /is no message/],
    ['done without its id', 'event: done\ndata: {"status":"completed"}\n\n', /fields: .*required.*id/],
    ['ready with an id', `id: 1-0\n${ready}`, /fields: .*additional/],
    ['an event without an id', `data: ${json({ seq: 1 })}\n\n`, /fields: .*required.*id/],
    ['a payload off its schema', 'event: done\nid: 1-0\ndata: {"status":"completed","error":{"code":"nope","message":"m"}}\n\n', /payload\/error\/code/],
    ['data that is not JSON', 'event: gap\ndata: nope\n\n', /not JSON/],
    ['another comment', ': hello\n\n', /is no message/],
  ])('flags %s', (_label, text, problem) => {
    expect(asyncApiViolations(text).problems.join('\n')).toMatch(problem);
  });
});
