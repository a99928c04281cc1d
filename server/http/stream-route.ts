import type { RequestHandler } from 'express';
import type { Config } from '../config';
import type { TimelineBus } from '../timeline/bus';
import { SessionFeed } from '../timeline/session-feed';
import { HttpError } from './errors';
import { lastEventIdParam, sessionIdParam } from './params';
import { SSE_HEADERS } from './sse-connection';
import { SseStream } from './sse-stream';
import type { StreamRegistry } from './stream-registry';

export interface StreamRouteDeps {
  bus: TimelineBus;
  config: Pick<Config, 'retryMs' | 'maxBufferedBytes'>;
  streams: StreamRegistry;
}

/** `GET /timeline/stream/:sessionId`: replay, then live, then `done`, over SSE. */
export function streamRoute({ bus, config, streams }: StreamRouteDeps): RequestHandler {
  const retryAfterS = String(Math.ceil(config.retryMs / 1000));
  const feedOptions = { maxHeldBytes: config.maxBufferedBytes };
  return async (req, res) => {
    const sessionId = sessionIdParam(req);
    const lastEventId = lastEventIdParam(req);
    if (req.method === 'HEAD') {
      // A probe, not a reader: answer the stream's headers without holding a stream open.
      res.writeHead(200, SSE_HEADERS).end();
      return;
    }
    if (!streams.tryReserve()) {
      throw new HttpError('too_many_streams', 'This instance has too many open streams', {
        headers: { 'Retry-After': retryAfterS },
      });
    }
    let feed: SessionFeed;
    try {
      feed = await SessionFeed.open(bus, sessionId, lastEventId, feedOptions);
    } catch (error) {
      streams.release();
      throw error;
    }
    if (feed.finishedAlready || req.socket.destroyed) {
      feed.close();
      streams.release();
      // The client has `done` already; 204 is how the SSE spec stops an EventSource retrying.
      if (!req.socket.destroyed) res.status(204).end();
      return;
    }
    SseStream.open(res, feed, sessionId, streams);
  };
}
