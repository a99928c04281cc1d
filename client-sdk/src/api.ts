import { TimelineError } from './errors.js';
import type { ErrorBody, ExecuteAccepted, ExecuteRequest, SessionHistory } from './types.js';

/** Headers sent with every request; a function is called per request, so a token can be refreshed. */
export type HeadersOption = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

/** The subset of `fetch` the SDK uses: the global one in browsers and Node 20+, or a wrapper. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

function isErrorBody(value: unknown): value is ErrorBody {
  const error = (value as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return typeof error?.code === 'string' && typeof error.message === 'string';
}

/** A non-2xx answer as a typed error carrying the server's `error.code` when it sent one. */
export async function errorFromResponse(response: Response): Promise<TimelineError> {
  const status = response.status;
  let body: unknown;
  let cause: unknown;
  try {
    body = JSON.parse(await response.text());
  } catch (error) {
    cause = error;
  }
  if (isErrorBody(body)) return new TimelineError(body.error.code, body.error.message, { status });
  // Not the contract's JSON (a proxy's HTML page, a cut body): still an error with the status.
  return new TimelineError('http_error', `HTTP ${status} ${response.statusText}`.trim(), { status, cause });
}

/** A 2xx body as JSON; anything else is not this service speaking. */
async function jsonBody<T>(response: Response, what: string): Promise<T> {
  try {
    return (await response.json()) as T;
  } catch (error) {
    throw new TimelineError('protocol_error', `${what} answered ${response.status} without a JSON body`, {
      status: response.status,
      cause: error,
    });
  }
}

/** The service's routes, one method each; no retry and no state here. */
export class ServiceApi {
  private readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly headers: HeadersOption | undefined,
    private readonly fetchImpl: FetchLike,
  ) {
    // Plain concatenation keeps a path prefix (`https://host/api`) and allows `''` (same origin).
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /** `GET /timeline/stream/:id`, raw: the caller reads the status and the body. */
  openStream(sessionId: string, lastEventId: string | null, signal: AbortSignal): Promise<Response> {
    const extra: Record<string, string> = { Accept: 'text/event-stream' };
    if (lastEventId !== null) extra['Last-Event-ID'] = lastEventId;
    return this.send(`/timeline/stream/${encodeURIComponent(sessionId)}`, { method: 'GET', cache: 'no-store', signal }, extra);
  }

  /** `POST /execute` in async mode (`202`); a server that ran it synchronously (`200`) is fine too. */
  async execute(request: ExecuteRequest, signal: AbortSignal): Promise<ExecuteAccepted> {
    const response = await this.send(
      '/execute',
      { method: 'POST', body: JSON.stringify(request), signal },
      { 'Content-Type': 'application/json', Prefer: 'respond-async' },
    );
    if (!response.ok) throw await errorFromResponse(response);
    return jsonBody<ExecuteAccepted>(response, 'POST /execute');
  }

  /** `POST /timeline/:id/cancel`: `true` when accepted, `false` when the run had already finished. */
  async cancel(sessionId: string): Promise<boolean> {
    // The server takes every POST as JSON only (so a browser preflights it); the body is empty.
    const response = await this.send(`/timeline/${encodeURIComponent(sessionId)}/cancel`, { method: 'POST' }, {
      'Content-Type': 'application/json',
    });
    if (response.ok) {
      await response.body?.cancel();
      return true;
    }
    const error = await errorFromResponse(response);
    if (error.code === 'session_finished') return false;
    throw error;
  }

  /** `GET /timeline/:id`: every retained event and the `done` record. */
  async history(sessionId: string, signal?: AbortSignal): Promise<SessionHistory> {
    const response = await this.send(`/timeline/${encodeURIComponent(sessionId)}`, { method: 'GET', cache: 'no-store', signal }, {
      Accept: 'application/json',
    });
    if (!response.ok) throw await errorFromResponse(response);
    return jsonBody<SessionHistory>(response, 'GET /timeline/:sessionId');
  }

  private async send(path: string, init: RequestInit, extra: Record<string, string>): Promise<Response> {
    const headers = new Headers(typeof this.headers === 'function' ? await this.headers() : this.headers);
    for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    try {
      return await this.fetchImpl(this.baseUrl + path, { ...init, headers });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new TimelineError('network_error', `${init.method ?? 'GET'} ${path} failed: ${describe(error)}`, { cause: error });
    }
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici puts the socket-level reason (ECONNREFUSED, …) in `cause`.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}
