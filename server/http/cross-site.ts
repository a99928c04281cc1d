import type { Request, RequestHandler } from 'express';
import { HttpError } from './errors';

/**
 * Guards for the state-changing routes (every `POST`) against other web sites.
 *
 * A page on any site can make a browser send a "simple" request, with no CORS preflight: an
 * HTML form (`enctype=text/plain` carries a JSON-looking body) or `fetch(url, {mode: 'no-cors'})`.
 * Requiring `Content-Type: application/json` makes every such request non-simple, so the
 * browser asks first (a preflight, answered by `CORS_ORIGINS`) and sends nothing if refused.
 * Checking `Sec-Fetch-Site` / `Origin` as well refuses what a browser still sends from another
 * site. Clients that are not browsers send neither header and are not concerned.
 */

/** `POST` bodies are JSON, and only JSON: `415 unsupported_media_type` otherwise. */
export const requireJson: RequestHandler = (req, _res, next) => {
  if (isJson(req.get('content-type'))) {
    next();
    return;
  }
  next(
    new HttpError('unsupported_media_type', 'POST requests must be sent with Content-Type: application/json'),
  );
};

function isJson(contentType: string | undefined): boolean {
  return contentType?.split(';', 1)[0].trim().toLowerCase() === 'application/json';
}

/**
 * Refuses a request a browser sent from another site (`403 origin_not_allowed`) unless that
 * site's origin is in `CORS_ORIGINS` (`['*']`: any origin; `null`: none).
 */
export function refuseOtherSites(corsOrigins: string[] | null): RequestHandler {
  const anyOrigin = corsOrigins?.includes('*') ?? false;
  const allowed = new Set(corsOrigins ?? []);
  return (req, _res, next) => {
    const origin = req.get('origin');
    if (anyOrigin || fromOwnSite(req, origin) || (origin !== undefined && allowed.has(origin))) {
      next();
      return;
    }
    next(
      new HttpError('origin_not_allowed', `Requests from ${origin ?? 'another site'} are not allowed (CORS_ORIGINS)`),
    );
  };
}

/** The request did not come from another site's page (or did not come from a browser at all). */
function fromOwnSite(req: Request, origin: string | undefined): boolean {
  // Sent by every current browser; `none` is the user's own action (address bar, bookmark).
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  // Older browsers: an Origin naming this host. No Origin at all: not a browser's cross-site request.
  if (origin === undefined) return true;
  return hostnameOf(origin) === req.hostname;
}

function hostnameOf(origin: string): string | null {
  try {
    return new URL(origin).hostname;
  } catch {
    // `null` (a sandboxed or file: page) and anything malformed name no host.
    return null;
  }
}
