import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import jwt from 'jsonwebtoken';
import type { Config } from '../config';
import { HttpError } from './errors';
import { requestScope } from './request-scope';

/** The caller every holder of `API_KEY` is: one shared key, one caller. */
export const API_KEY_CALLER = 'api-key';

/** Routes open without credentials: probes, metrics, and the demo page with its static files. */
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
const DEMO_ASSETS = '/assets/';
/** The one route that also takes `?access_token=`: a browser EventSource cannot send headers. */
const STREAM_PATH = /^\/timeline\/stream\/[^/]+\/?$/i;
const ACCESS_TOKEN = 'access_token';

// One message for every failure, so a 401 never tells a prober which part was wrong.
const UNAUTHORIZED = new HttpError('unauthorized', 'Missing or invalid bearer credentials', {
  headers: { 'WWW-Authenticate': 'Bearer' },
});

/** Who sent the request, as `authenticate` found it; `null` when auth is off. */
export function callerOf(res: Response): string | null {
  return (res.locals.caller as string | undefined) ?? null;
}

function isOpen(req: Request): boolean {
  if (OPEN_PATHS.has(req.path)) return true;
  const read = req.method === 'GET' || req.method === 'HEAD';
  return read && (req.path === '/' || req.path.startsWith(DEMO_ASSETS));
}

function isStreamRoute(req: Request): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && STREAM_PATH.test(req.path);
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Checks bearer credentials: the shared `API_KEY`, or an HS256 JWT signed with `JWT_SECRET`. */
export class Authenticator {
  private readonly keyDigest: Buffer | null;
  private readonly jwtSecret: string | null;

  constructor({ apiKey, jwtSecret }: Pick<Config, 'apiKey' | 'jwtSecret'>) {
    this.keyDigest = apiKey === null ? null : sha256(apiKey);
    this.jwtSecret = jwtSecret;
  }

  get enabled(): boolean {
    return this.keyDigest !== null || this.jwtSecret !== null;
  }

  /**
   * The caller the credential names, or `null` if it is not valid. `tokenOnly`: the shared key
   * is not accepted (a credential from a URL, which proxies and browsers may log or keep).
   */
  caller(credential: string, { tokenOnly = false } = {}): string | null {
    // Digests have one length whatever the input, so the compare takes the same time for any guess.
    if (!tokenOnly && this.keyDigest !== null && timingSafeEqual(sha256(credential), this.keyDigest)) return API_KEY_CALLER;
    return this.jwtSecret === null ? null : this.tokenSubject(credential, this.jwtSecret);
  }

  private tokenSubject(token: string, secret: string): string | null {
    let claims: string | jwt.JwtPayload;
    try {
      // Pinned, so neither `none` nor a public-key algorithm fed our secret can pass.
      claims = jwt.verify(token, secret, { algorithms: ['HS256'] });
    } catch (error) {
      if (error instanceof jwt.JsonWebTokenError) return null;
      throw error;
    }
    if (typeof claims === 'string') return null;
    // Tokens must be short-lived: one without `exp` would never stop working.
    if (typeof claims.exp !== 'number') return null;
    if (typeof claims.sub !== 'string' || claims.sub === '' || claims.sub === API_KEY_CALLER) return null;
    return claims.sub;
  }
}

/** A bearer credential and where it came from. */
interface Credential {
  value: string;
  /** From `?access_token=`: a URL ends up in logs and histories, so only short-lived JWTs count there. */
  inUrl: boolean;
}

/** The bearer credential: the `Authorization` header, or `?access_token=` on the stream route only. */
function credentialOf(req: Request): Credential | null {
  const header = req.get('authorization');
  if (header !== undefined) {
    const value = /^Bearer +([^\s]+) *$/i.exec(header)?.[1];
    return value === undefined ? null : { value, inUrl: false };
  }
  if (!isStreamRoute(req)) return null;
  const query = req.query[ACCESS_TOKEN];
  return typeof query === 'string' && query !== '' ? { value: query, inUrl: true } : null;
}

/** `url` without its `access_token` parameters; the rest of the query is kept byte for byte. */
export function withoutAccessToken(url: string): string {
  const start = url.indexOf('?');
  if (start === -1) return url;
  const kept = url
    .slice(start + 1)
    .split('&')
    .filter((part) => {
      const name = part.split('=', 1)[0];
      try {
        return decodeURIComponent(name.replace(/\+/g, ' ')) !== ACCESS_TOKEN;
      } catch {
        // A name that does not decode is not `access_token`; the route decides what it means.
        return true;
      }
    });
  return kept.length === 0 ? url.slice(0, start) : `${url.slice(0, start)}?${kept.join('&')}`;
}

/**
 * With `API_KEY` or `JWT_SECRET` set, every route but the open ones needs a bearer credential;
 * the caller it names goes to `res.locals` for session binding. The token is cut out of the
 * request's URL at once, so nothing after this (routes, error handler, logs) can see it.
 */
export function authenticate(authenticator: Authenticator): RequestHandler {
  return (req, res, next) => {
    const credential = credentialOf(req);
    if (req.url.includes('?')) {
      req.url = withoutAccessToken(req.url);
      req.originalUrl = withoutAccessToken(req.originalUrl);
    }
    if (isOpen(req)) {
      next();
      return;
    }
    const caller = credential === null ? null : authenticator.caller(credential.value, { tokenOnly: credential.inUrl });
    if (caller === null) {
      requestScope(res).log.debug({ method: req.method, path: req.path, credential: credential === null ? 'missing' : 'invalid' }, 'unauthorized request');
      next(UNAUTHORIZED);
      return;
    }
    res.locals.caller = caller;
    next();
  };
}
