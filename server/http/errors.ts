import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { ErrorBody } from '../../client-sdk/src/types';
import { statusOf, type HttpErrorCode } from '../contract/error-codes';
import { BusUnavailableError } from '../timeline/bus';
import { requestScope } from './request-scope';

/**
 * An error the API answers with the contract's JSON shape: `{"error": {"code", "message"}}`,
 * with the status the error table gives its code.
 */
export class HttpError extends Error {
  readonly status: number;

  constructor(
    readonly code: HttpErrorCode,
    message: string,
    readonly extra: { headers?: Record<string, string>; sessionId?: string } = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.status = statusOf(code);
  }
}

export function sendError(res: Parameters<RequestHandler>[1], error: HttpError): void {
  const body: ErrorBody = { error: { code: error.code, message: error.message } };
  if (error.extra.sessionId) body.session_id = error.extra.sessionId;
  for (const [name, value] of Object.entries(error.extra.headers ?? {})) res.setHeader(name, value);
  res.status(error.status).json(body);
}

/** Errors of body-parser (they carry a `type`) and of the router that a client can cause, as contract codes. */
function fromLibraryError(error: { type?: string; status?: number }): HttpError | null {
  // The router cannot percent-decode a path parameter, and every route parameter is a session id.
  if (error instanceof URIError && error.status === 400) {
    return new HttpError('invalid_session_id', 'Session id must be a UUID (8-4-4-4-12 hex digits)');
  }
  switch (error.type) {
    case 'entity.parse.failed':
      return new HttpError('invalid_json', 'Request body is not valid JSON');
    case 'entity.too.large':
      return new HttpError('payload_too_large', 'Request body is larger than the limit');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError('unsupported_encoding', 'Request body encoding is not supported');
    case 'request.aborted':
    case 'request.size.invalid':
      return new HttpError('invalid_request', 'Request body was incomplete');
    default:
      // e.g. a gzip or br body that does not inflate: the client's fault, not ours.
      return error.status === 400
        ? new HttpError('invalid_request', 'Request body could not be read')
        : null;
  }
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError('not_found', `No route for ${req.method} ${req.path}`));
};

/** Redis is unreachable: a stream, run or cancel can be tried again shortly (any route that needs it). */
const BUS_UNAVAILABLE = new HttpError('bus_unavailable', 'The event bus is unavailable; try again shortly', {
  headers: { 'Retry-After': '1' },
});

/** The one place errors become responses: never a stack trace, never HTML. Logs with the request's id. */
export function errorHandler(): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const { log } = requestScope(res);
    const known =
      error instanceof HttpError
        ? error
        : error instanceof BusUnavailableError
          ? BUS_UNAVAILABLE
          : fromLibraryError(error as { type?: string; status?: number });
    if (res.headersSent) {
      log.warn({ err: error, path: req.path }, 'error after the response started');
      res.end();
      return;
    }
    if (known) {
      sendError(res, known);
      return;
    }
    log.error({ err: error, method: req.method, path: req.path }, 'unhandled error');
    sendError(res, new HttpError('internal_error', 'Internal server error'));
  };
}
