import path from 'node:path';
import type { RequestHandler, Response } from 'express';
import { HttpError } from './errors';

/**
 * Where the demo page's files are: `npm run build` writes them to dist/demo/ (demo/build.mjs),
 * beside the compiled server in dist/server/. Run from source (the in-process tests), this
 * is demo/ itself, which holds the HTML and CSS but not the built script.
 */
const DEMO_DIR = path.resolve(__dirname, '..', '..', 'demo');

/** The only files served: the demo folder in source form also holds its TypeScript and build script. */
const ASSETS = new Set(['main.js', 'main.js.map', 'styles.css']);

const PAGE_HEADERS = {
  // Unhashed file names: the browser revalidates (Last-Modified) instead of running a stale script.
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  // The page talks only to the service that served it.
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

function sendDemoFile(res: Response, file: string, next: (error?: unknown) => void): void {
  res.sendFile(path.join(DEMO_DIR, file), { headers: PAGE_HEADERS, dotfiles: 'deny' }, (error?: NodeJS.ErrnoException) => {
    if (!error) return;
    if (error.code === 'ENOENT') {
      next(new HttpError('not_found', `The demo page's ${file} is not built: run "npm run build"`));
      return;
    }
    next(error);
  });
}

/** `GET /`: the live timeline page (demo/), built on the client SDK. */
export const demoPageRoute: RequestHandler = (_req, res, next) => {
  sendDemoFile(res, 'index.html', next);
};

/** `GET /assets/:file`: the page's script and stylesheet. Needs no credentials, like the page. */
export const demoAssetRoute: RequestHandler = (req, res, next) => {
  const file = String(req.params.file);
  if (!ASSETS.has(file)) {
    next(new HttpError('not_found', `No route for ${req.method} ${req.path}`));
    return;
  }
  sendDemoFile(res, file, next);
};
