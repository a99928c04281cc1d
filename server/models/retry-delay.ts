import type { Middleware } from '@anthropic-ai/sdk';

/** The SDK's own backoff before retry `attempt` (0-based): 0.5 s doubling, at most 8 s. */
function sdkBackoffMs(attempt: number): number {
  return Math.min(500 * 2 ** attempt, 8000);
}

/**
 * Bounds the SDK's wait before a retry. The SDK decides whether and how often to retry, and
 * waits what the provider's `retry-after-ms` / `retry-after` says (up to ~24 days) or its own
 * backoff; this middleware rewrites a failed response's `retry-after-ms` to at most `maxMs`,
 * so a run never sits out a long provider-requested pause.
 */
export function boundRetryDelay(maxMs: number): Middleware {
  return async (request, next) => {
    const response = await next(request);
    if (response.ok) return response;
    const attempt = Number(request.headers.get('x-stainless-retry-count') ?? 0) || 0;
    const wanted = askedDelayMs(response.headers) ?? sdkBackoffMs(attempt);
    // `retry-after-ms` must be above 0 for the SDK to take it.
    const delay = Math.max(1, Math.min(wanted, maxMs));
    const headers = new Headers(response.headers);
    headers.set('retry-after-ms', String(delay));
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  };
}

/** The wait the provider asked for, as the SDK reads it; `undefined` when it asked none. */
function askedDelayMs(headers: Headers): number | undefined {
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (ms > 0) return ms;
  const after = headers.get('retry-after');
  if (after === null) return undefined;
  const seconds = Number.parseFloat(after);
  if (!Number.isNaN(seconds)) return seconds > 0 ? seconds * 1000 : undefined;
  const until = Date.parse(after) - Date.now();
  return until > 0 ? until : undefined;
}
