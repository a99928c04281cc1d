import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  PermissionDeniedError,
} from '@anthropic-ai/sdk';
import type { ModelErrorCode } from '../contract/error-codes';
import { ModelError } from './model';

/** What the call knew when it failed, beyond the error itself. */
export interface FailureContext {
  /** The response head had arrived: the stream was open. */
  connected: boolean;
  /** The call closed the stream itself after this many ms without a stream event; `null` if it did not. */
  stalledAfterMs: number | null;
  /** How many times the SDK retries a failed request before giving up. */
  maxRetries: number;
}

/**
 * Turns whatever the SDK threw into a `ModelError` with a stable code and a message of our own:
 * the provider's error text (`detail`) can name internal organisations, projects or limits, so
 * it goes to the log and never into the message a client sees.
 */
export function toModelError(error: unknown, context: FailureContext): ModelError {
  const [code, message] = classify(error, context);
  return new ModelError(code, message, { cause: error, detail: error instanceof APIError ? providerDetail(error) : null });
}

function classify(error: unknown, { connected, stalledAfterMs, maxRetries }: FailureContext): [ModelErrorCode, string] {
  // After our own idle abort, what the SDK throws only echoes that abort.
  if (stalledAfterMs !== null) return ['model_timeout', `The model stream was silent for ${stalledAfterMs} ms`];
  const retried = maxRetries > 0 ? ` (after ${maxRetries} retries)` : '';
  if (error instanceof APIConnectionTimeoutError) {
    return ['model_timeout', `The model provider did not answer in time${retried}`];
  }
  if (error instanceof APIConnectionError) {
    return ['model_connection_lost', `Could not connect to the model provider${retried}`];
  }
  if (error instanceof APIError) {
    if (error.status === undefined) return fromStreamErrorEvent(error.type);
    const http = `HTTP ${error.status}`;
    if (error instanceof AuthenticationError || error instanceof PermissionDeniedError) {
      return ['model_auth_failed', `The model provider refused the API key (${http})`];
    }
    if (error.status === 429) return ['model_rate_limited', `The model provider's rate limit was reached${retried}`];
    if (error.status === 529) return ['model_overloaded', `The model provider is overloaded${retried}`];
    if (error.status >= 500) return ['model_unavailable', `The model provider failed (${http})${retried}`];
    if ([400, 404, 413, 422].includes(error.status)) {
      return ['model_bad_request', `The model provider refused the request (${http}; check ANTHROPIC_MODEL)`];
    }
    return ['model_error', `The model provider answered with an error (${http})`];
  }
  // A stream that stops before `message_stop` (the socket was cut, or closed early) reaches us
  // as a bare SDK error; its cause is not reliably kept, so the open stream is what tells.
  if (connected && !(causeOf(error) instanceof SyntaxError)) {
    return ['model_connection_lost', 'The connection to the model provider was lost before the answer was complete'];
  }
  return ['model_stream_error', 'The model stream could not be read'];
}

/** An `error` event in the middle of a 200 stream: the HTTP status is gone, the type tells. */
function fromStreamErrorEvent(type: string | null): [ModelErrorCode, string] {
  if (type === 'overloaded_error') return ['model_overloaded', 'The model provider is overloaded (mid-stream)'];
  if (type === 'rate_limit_error') return ['model_rate_limited', "The model provider's rate limit was reached (mid-stream)"];
  return ['model_stream_error', 'The model stream failed mid-answer'];
}

/** `<status> <type>: <message>` from the provider's error body, never the raw body; for the log. */
function providerDetail(error: APIError): string {
  const parts = [error.status, error.type].filter((part) => part !== undefined && part !== null);
  const head = parts.join(' ') || 'error';
  return error.apiMessage ? `${head}: ${error.apiMessage}` : head;
}

function causeOf(error: unknown): unknown {
  return error instanceof Error ? error.cause : undefined;
}
