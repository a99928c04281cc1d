import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  PermissionDeniedError,
} from '@anthropic-ai/sdk';
// The `error.code`s a run fails with when the Anthropic provider fails (README, "Using Claude").
import type { ModelErrorCode } from '../../client-sdk/src/types';
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

/** Turns whatever the SDK threw into a `ModelError` with a stable code and a plain message. */
export function toModelError(error: unknown, context: FailureContext): ModelError {
  const [code, message] = classify(error, context);
  return new ModelError(code, message, { cause: error });
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
    const detail = providerDetail(error);
    if (error.status === undefined) return fromStreamErrorEvent(error.type, detail);
    if (error instanceof AuthenticationError || error instanceof PermissionDeniedError) {
      return ['model_auth_failed', `The model provider refused the API key: ${detail}`];
    }
    if (error.status === 429) return ['model_rate_limited', `The model provider's rate limit was reached${retried}: ${detail}`];
    if (error.status === 529) return ['model_overloaded', `The model provider is overloaded${retried}: ${detail}`];
    if (error.status >= 500) return ['model_unavailable', `The model provider failed${retried}: ${detail}`];
    if ([400, 404, 413, 422].includes(error.status)) {
      return ['model_bad_request', `The model provider refused the request (check ANTHROPIC_MODEL): ${detail}`];
    }
    return ['model_error', `The model provider answered with an error: ${detail}`];
  }
  // A stream that stops before `message_stop` (the socket was cut, or closed early) reaches us
  // as a bare SDK error; its cause is not reliably kept, so the open stream is what tells.
  if (connected && !(causeOf(error) instanceof SyntaxError)) {
    return ['model_connection_lost', 'The connection to the model provider was lost before the answer was complete'];
  }
  return ['model_stream_error', 'The model stream could not be read'];
}

/** An `error` event in the middle of a 200 stream: the HTTP status is gone, the type tells. */
function fromStreamErrorEvent(type: string | null, detail: string): [ModelErrorCode, string] {
  if (type === 'overloaded_error') return ['model_overloaded', `The model provider is overloaded (mid-stream): ${detail}`];
  if (type === 'rate_limit_error') return ['model_rate_limited', `The model provider's rate limit was reached (mid-stream): ${detail}`];
  return ['model_stream_error', `The model stream failed mid-answer: ${detail}`];
}

/** `<status> <type>: <message>` from the provider's error body, never the raw body. */
function providerDetail(error: APIError): string {
  const parts = [error.status, error.type].filter((part) => part !== undefined && part !== null);
  const head = parts.join(' ') || 'error';
  return error.apiMessage ? `${head}: ${error.apiMessage}` : head;
}

function causeOf(error: unknown): unknown {
  return error instanceof Error ? error.cause : undefined;
}
