import { cancelSession, executeAsync, expectJsonError, getHistory, postExecuteRaw, request } from '../helpers/api';
import { newSessionId, startService, synthetic, type RunningService } from '../helpers/service';
import { waitUntil } from '../helpers/wait';

/**
 * Another web site must not start or cancel runs through a visitor's browser: every POST is
 * JSON only (so a browser has to preflight it) and is refused when a browser says it comes
 * from a site that is not the service's own and not in CORS_ORIGINS.
 */

const APP = 'https://app.example';
const EVIL = 'https://evil.example';
/** A run that stays running until it is cancelled. */
const LONG_RUN = { events: 2, interval_ms: 60000 };

/**
 * What `<form method=post enctype=text/plain>` sends for one field named `{"project_id":…,"x":"`
 * with the value `"}`: a body that parses as JSON, under a content type no browser preflights.
 */
function formBody(sessionId: string): string {
  const name = `{"project_id":"p","query":"q","workflow":"synthetic","params":{"events":1},"session_id":"${sessionId}","x":"`;
  return `${name}=${'"}'}`;
}

const fromSite = (site: string, origin?: string) => ({ 'Sec-Fetch-Site': site, ...(origin !== undefined && { Origin: origin }) });

describe('cross-site requests, CORS_ORIGINS unset', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null });
  });
  afterAll(() => svc.close());

  it('refuses a cross-site text/plain form POST to /execute with 403 origin_not_allowed, starting nothing', async () => {
    const sessionId = newSessionId();
    const response = await postExecuteRaw(svc.url, formBody(sessionId), { 'Content-Type': 'text/plain', ...fromSite('cross-site', EVIL) });
    expectJsonError(response, 403, 'origin_not_allowed');
    expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
  });

  it('refuses any POST body that is not declared JSON with 415 unsupported_media_type, even without browser headers', async () => {
    const sessionId = newSessionId();
    const json = JSON.stringify(synthetic(sessionId, { events: 1 }));
    const cases: Array<[string, Record<string, string>]> = [
      [formBody(sessionId), { 'Content-Type': 'text/plain' }],
      [formBody(sessionId), { 'Content-Type': 'text/plain; charset=utf-8' }],
      [json, { 'Content-Type': 'application/x-www-form-urlencoded' }],
      [json, { 'Content-Type': 'multipart/form-data; boundary=x' }],
      [json, { 'Content-Type': 'application/jsonx' }],
      [json, { 'Content-Type': 'text/json' }],
    ];
    for (const [body, headers] of cases) {
      const response = await postExecuteRaw(svc.url, body, headers);
      expect({ headers, status: response.status }).toEqual({ headers, status: 415 });
      expectJsonError(response, 415, 'unsupported_media_type');
    }
    // No Content-Type at all.
    const bare = await fetch(`${svc.url}/execute`, { method: 'POST', body: new Uint8Array(Buffer.from(json)) });
    expect(bare.status).toBe(415);
    expect(((await bare.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
  });

  it('accepts JSON with parameters and from non-browser clients, its own site, and the user (Sec-Fetch-Site none)', async () => {
    const accepted: Array<Record<string, string>> = [
      { 'Content-Type': 'application/json; charset=utf-8' },
      { 'Content-Type': 'Application/JSON' },
      fromSite('same-origin', svc.url),
      fromSite('none'),
      // An older browser without Sec-Fetch-*: an Origin naming this host is its own page.
      { Origin: svc.url },
    ];
    for (const headers of accepted) {
      const response = await executeAsync(svc.url, synthetic(newSessionId(), { events: 1 }), headers);
      expect({ headers, status: response.status }).toEqual({ headers, status: 202 });
    }
  });

  it('refuses same-site and cross-site browsers, and Origins of other hosts or null, with 403', async () => {
    const refused: Array<Record<string, string>> = [
      fromSite('cross-site', EVIL),
      fromSite('same-site', 'https://sub.app.example'),
      // A browser that says cross-site is believed even if its Origin looks like ours.
      fromSite('cross-site', svc.url),
      fromSite('cross-site'),
      { Origin: EVIL },
      { Origin: 'null' },
      { Origin: 'not a url' },
    ];
    for (const headers of refused) {
      const sessionId = newSessionId();
      const response = await executeAsync(svc.url, synthetic(sessionId, { events: 1 }), headers);
      expect({ headers, status: response.status }).toEqual({ headers, status: 403 });
      expectJsonError(response, 403, 'origin_not_allowed');
      expectJsonError(await getHistory(svc.url, sessionId), 404, 'session_not_found');
    }
  });

  it('guards cancel the same way: 415 without JSON, 403 from another site; the run goes on', async () => {
    const sessionId = newSessionId();
    expect((await executeAsync(svc.url, synthetic(sessionId, LONG_RUN))).status).toBe(202);
    const cancelUrl = `${svc.url}/timeline/${sessionId}/cancel`;
    // An empty-bodied no-cors fetch and a text/plain form: both "simple" requests for a browser.
    expectJsonError(await request(cancelUrl, { method: 'POST' }), 415, 'unsupported_media_type');
    expectJsonError(await request(cancelUrl, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '' }), 415, 'unsupported_media_type');
    expectJsonError(await cancelSession(svc.url, sessionId, fromSite('cross-site', EVIL)), 403, 'origin_not_allowed');
    expect((await getHistory(svc.url, sessionId)).json.status).toBe('running');

    expect((await cancelSession(svc.url, sessionId, fromSite('same-origin', svc.url))).status).toBe(202);
    await waitUntil(async () => (await getHistory(svc.url, sessionId)).json.status === 'cancelled', { label: 'the run to end cancelled' });
  });

  it('leaves GET routes to CORS: a cross-site browser may open a stream and read nothing it is not allowed to', async () => {
    const response = await request(`${svc.url}/timeline/${newSessionId()}`, { headers: fromSite('cross-site', EVIL) });
    expectJsonError(response, 404, 'session_not_found');
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('cross-site requests, CORS_ORIGINS set', () => {
  let listed: RunningService;
  let any: RunningService;
  beforeAll(async () => {
    listed = await startService({ corsOrigins: [APP], keepAliveMs: null });
    any = await startService({ corsOrigins: ['*'], keepAliveMs: null });
  });
  afterAll(async () => {
    await listed.close();
    await any.close();
  });

  it('accepts a browser POST from a listed origin, and refuses any other', async () => {
    for (const site of ['cross-site', 'same-site']) {
      const ok = await executeAsync(listed.url, synthetic(newSessionId(), { events: 1 }), fromSite(site, APP));
      expect({ site, status: ok.status }).toEqual({ site, status: 202 });
      expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    }
    for (const origin of [EVIL, `${APP}.evil`, 'http://app.example', 'null']) {
      const refused = await executeAsync(listed.url, synthetic(newSessionId(), { events: 1 }), fromSite('cross-site', origin));
      expect({ origin, status: refused.status }).toEqual({ origin, status: 403 });
    }
    // A listed origin still needs JSON: its form posts are refused too.
    const form = await postExecuteRaw(listed.url, formBody(newSessionId()), { 'Content-Type': 'text/plain', ...fromSite('cross-site', APP) });
    expectJsonError(form, 415, 'unsupported_media_type');
  });

  it('with "*", accepts JSON POSTs from any origin, and still refuses forms', async () => {
    const ok = await executeAsync(any.url, synthetic(newSessionId(), { events: 1 }), fromSite('cross-site', EVIL));
    expect(ok.status).toBe(202);
    const form = await postExecuteRaw(any.url, formBody(newSessionId()), { 'Content-Type': 'text/plain', ...fromSite('cross-site', EVIL) });
    expectJsonError(form, 415, 'unsupported_media_type');
  });
});
