import { randomUUID } from 'node:crypto';
import type { Context } from '@opentelemetry/api';
import type { RequestHandler, Response } from 'express';
import type { Logger } from 'pino';

export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * A caller's `X-Request-Id` is kept when it is 1 to 128 characters of letters, digits and
 * `. _ ~ : / + = @ -` (UUIDs, ULIDs, base64 and the usual proxy formats); anything else is
 * replaced, so a log line or a header never carries what a client smuggled in.
 */
const VALID_REQUEST_ID = /^[A-Za-z0-9._~:/+=@-]{1,128}$/;

/** Paths whose requests are logged at `debug`, not `info`: probes, scrapes and the demo page's files. */
const QUIET_PATHS = /^\/(healthz|readyz|metrics|assets\/.*)?$/;

/** The caller's request id if it is acceptable, else a new one. */
export function requestIdFrom(header: string | undefined): string {
  return header !== undefined && VALID_REQUEST_ID.test(header) ? header : randomUUID();
}

/** One request: its id, when it arrived, its logger and (with tracing on) its trace context. */
export class RequestScope {
  /** `performance.now()` when the request arrived. */
  readonly receivedAt = performance.now();
  /** The context of the request's server span, once a traced route made one. */
  trace: Context | undefined;
  /** The session the request turned out to be about, for the access log (a server-made id, say). */
  sessionId: string | undefined;
  private child: Logger | null = null;

  constructor(
    readonly id: string,
    private readonly baseLog: Logger,
  ) {}

  /** The service's logger with `request_id` on every line (made on first use). */
  get log(): Logger {
    return (this.child ??= this.baseLog.child({ request_id: this.id }));
  }
}

/** The scope `requestScopes` gave the request. */
export function requestScope(res: Response): RequestScope {
  return res.locals.requestScope as RequestScope;
}

/**
 * Gives each request its id (the caller's `X-Request-Id`, or a new one), echoes it in the
 * response's `X-Request-Id`, and logs one line when the response is over (for a stream: when
 * it closes), with the id, method, path, status and duration. Mounted first, so every
 * response carries the id, a `401` and a preflight included.
 */
export function requestScopes(log: Logger): RequestHandler {
  return (req, res, next) => {
    const scope = new RequestScope(requestIdFrom(req.get(REQUEST_ID_HEADER)), log);
    res.locals.requestScope = scope;
    res.setHeader(REQUEST_ID_HEADER, scope.id);
    res.once('close', () => {
      const level = QUIET_PATHS.test(req.path) ? 'debug' : 'info';
      if (!log.isLevelEnabled(level)) return;
      scope.log[level](
        {
          method: req.method,
          path: req.path,
          status: res.statusCode,
          duration_ms: Math.round(performance.now() - scope.receivedAt),
          ...(scope.sessionId !== undefined && { session_id: scope.sessionId }),
          // The client left before the response was complete (normal for a stream).
          ...(!res.writableFinished && { completed: false }),
        },
        'request',
      );
    });
    next();
  };
}
