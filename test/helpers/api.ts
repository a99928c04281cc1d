import net from 'node:net';
import supertest from 'supertest';
import { within } from './wait';
import type { SessionHistory } from '../../client-sdk/src/types';

/** A response read to the end: status, headers, raw text and the JSON it parses to (if any). */
export interface ApiResponse<Body = any> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body; `undefined` when it is empty or not JSON. */
  json: Body;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Any request, through supertest against the running server; the body is kept as text so
 * tests can check it is never HTML or a stack trace.
 */
export async function request(url: string, init: RequestOptions = {}): Promise<ApiResponse> {
  const { origin, pathname, search } = new URL(url);
  const agent = supertest(origin) as unknown as Record<string, (path: string) => supertest.Test>;
  const method = (init.method ?? 'GET').toLowerCase();
  let test = agent[method](pathname + search).buffer(true).parse(asText);
  for (const [name, value] of Object.entries(init.headers ?? {})) test = test.set(name, value);
  if (init.body !== undefined) test = test.send(init.body);
  const response = await test;
  const text = typeof response.body === 'string' ? response.body : '';
  const headers = new Headers();
  for (const [name, value] of Object.entries(response.headers as Record<string, string | string[]>)) {
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  return { status: response.status, headers, text, json: parseJson(text) };
}

/** Keeps every body as raw text, whatever its content type. */
function asText(res: unknown, done: (err: Error | null, body: string) => void): void {
  const stream = res as NodeJS.ReadableStream;
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (text += chunk));
  stream.on('end', () => done(null, text));
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    // Not JSON (e.g. the demo page); callers check `text` or the content type instead.
    return undefined;
  }
}

/** `POST /execute` with a body sent exactly as given (bad JSON, arrays, oversize bodies). */
export function postExecuteRaw(url: string, body: string, headers: Record<string, string> = {}): Promise<ApiResponse> {
  return request(`${url}/execute`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body,
  });
}

/** `POST /execute` with `Prefer: respond-async`: answered (`202`) without waiting for the run. */
export function executeAsync(url: string, body: unknown, headers: Record<string, string> = {}): Promise<ApiResponse> {
  return postExecuteRaw(url, JSON.stringify(body), { Prefer: 'respond-async', ...headers });
}

/** `GET /timeline/:sessionId`. */
export function getHistory(url: string, sessionId: string): Promise<ApiResponse<SessionHistory>> {
  return request(`${url}/timeline/${sessionId}`);
}

/** `POST /timeline/:sessionId/cancel`, as JSON like every POST (its body is empty). */
export function cancelSession(url: string, sessionId: string, headers: Record<string, string> = {}): Promise<ApiResponse> {
  return request(`${url}/timeline/${sessionId}/cancel`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } });
}

/**
 * Asserts the contract's error shape `{"error": {"code", "message"}}` (plus `session_id` where
 * the contract has one), JSON not HTML, and no stack trace; returns the message. Takes a
 * response of these helpers or of supertest (`request(app)…`).
 */
export function expectJsonError(response: ApiResponse | supertest.Response, status: number, code: string): string {
  const isApi = response.headers instanceof Headers;
  const json = isApi ? (response as ApiResponse).json : (response as supertest.Response).body;
  const contentType = isApi
    ? (response as ApiResponse).headers.get('content-type')
    : ((response as supertest.Response).headers['content-type'] as string | undefined);
  expect({ status: response.status, code: json?.error?.code }).toEqual({ status, code });
  expect(contentType).toMatch(/^application\/json/);
  expect(typeof json.error.message).toBe('string');
  expect(json.error.message.length).toBeGreaterThan(0);
  expect(Object.keys(json.error).sort()).toEqual(['code', 'message']);
  expect(Object.keys(json).filter((key) => key !== 'session_id')).toEqual(['error']);
  expect(response.text).not.toMatch(/<html|<!doctype/i);
  expect(response.text).not.toMatch(/\bat .+:\d+:\d+/);
  expect(response.text).not.toMatch(/\\n\s*at /);
  return json.error.message as string;
}

/** The value of one sample in Prometheus text, e.g. `timeline_runs_total{outcome="completed"}`. */
export function metricSample(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  if (line === undefined) throw new Error(`no sample ${sample} in metrics:\n${text}`);
  return Number(line.slice(sample.length + 1));
}

/**
 * Writes `text` as is on a new TCP connection to `url`'s host and port (requests no HTTP client
 * would send), and resolves with everything the server sent until it closed the connection.
 */
export async function sendRaw(url: string, text: string, timeoutMs = 10000): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const answer = new Promise<string>((resolve) => {
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    // A server that resets the connection after its answer: what arrived is still the answer.
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(received));
  });
  socket.write(text);
  try {
    return await within(answer, timeoutMs, 'the server to answer and close the raw connection');
  } finally {
    socket.destroy();
  }
}

/** A raw HTTP/1.1 response's status, headers (lower-case names) and body. */
export function parseRawResponse(raw: string): { status: number; headers: Record<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(end + 4) };
}
