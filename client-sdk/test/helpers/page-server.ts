import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A file a page server answers with. */
export interface PageFile {
  type: string;
  body: string | Buffer | (() => string | Buffer);
}

export interface PageServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `files` (by path, `/` for the page) on a free port: a web frontend's own origin,
 * another than the service's, so CORS and its preflights are real. Anything else is a 404.
 */
export function startPageServer(files: Record<string, PageFile>): Promise<PageServer> {
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url ?? '/', 'http://page').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const body = typeof file.body === 'function' ? file.body() : file.body;
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' }).end(body);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
