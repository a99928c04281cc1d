import { parseRawResponse, request, sendRaw } from '../helpers/api';
import { newSessionId, startService, type RunningService } from '../helpers/service';

/**
 * Requests Node's HTTP parser refuses before the app sees them still get the JSON error shape,
 * sent over a raw socket as no HTTP client would send them; the instance keeps serving.
 */

let svc: RunningService;
beforeAll(async () => {
  svc = await startService({ keepAliveMs: null });
});
afterAll(() => svc.close());

function expectJsonAnswer(raw: string, status: number, code: string): void {
  const response = parseRawResponse(raw);
  expect({ status: response.status, code: (JSON.parse(response.body) as { error: { code: string } }).error.code }).toEqual({ status, code });
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  expect(Number(response.headers['content-length'])).toBe(Buffer.byteLength(response.body));
  expect(Object.keys(JSON.parse(response.body).error).sort()).toEqual(['code', 'message']);
}

it('answers headers over the limit with 431 headers_too_large as JSON, not plain text', async () => {
  const huge = 'x'.repeat(20 * 1024);
  const raw = await sendRaw(svc.url, `GET /timeline/${newSessionId()} HTTP/1.1\r\nHost: x\r\nX-Pad: ${huge}\r\n\r\n`);
  expect(raw).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  expectJsonAnswer(raw, 431, 'headers_too_large');
});

it.each([
  ['a malformed request line', 'GARBAGE\r\n\r\n'],
  ['a header line with a bare LF', `GET /healthz HTTP/1.1\r\nHost: x\nX-Injected: 1\r\n\r\n`],
  ['an invalid header name', 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n'],
  ['an invalid Content-Length', 'POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
])('answers %s with 400 bad_request as JSON', async (_label, text) => {
  expectJsonAnswer(await sendRaw(svc.url, text), 400, 'bad_request');
});

it('adds nothing to a response already sent on a keep-alive connection, and keeps serving', async () => {
  const raw = await sendRaw(svc.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n');
  expect(raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
  expect(parseRawResponse(raw).status).toBe(200);
  expect((await request(`${svc.url}/healthz`)).status).toBe(200);
});
