import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { ReadyPayload } from '../../client-sdk/src/types';
import type { Config } from '../config';
import type { Metrics } from '../metrics';
import type { TimelineBus } from '../timeline/bus';
import { SessionFeed } from '../timeline/session-feed';
import { HttpError } from './errors';
import { lastEventIdParam, sessionIdParam } from './params';
import { SSE_HEADERS, SseStream } from './sse-stream';
import type { StreamRegistry } from './stream-registry';

export interface StreamRouteDeps {
  bus: TimelineBus;
  config: Pick<Config, 'retryMs' | 'maxBufferedBytes'>;
  streams: StreamRegistry;
  metrics: Metrics;
  log: Logger;
}

/** `GET /timeline/stream/:sessionId`: replay, then live, then `done`, over SSE. */
export function streamRoute({ bus, config, streams, metrics, log }: StreamRouteDeps): RequestHandler {
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
        headers: { 'Retry-After': String(Math.ceil(config.retryMs / 1000)) },
      });
    }
    let feed: SessionFeed;
    try {
      feed = await SessionFeed.open(bus, sessionId, lastEventId);
    } catch (error) {
      streams.release();
      throw error;
    }
    if (feed.finishedAlready) {
      // The client has `done` already; 204 is how the SSE spec stops an EventSource retrying.
      feed.close();
      streams.release();
      res.status(204).end();
      return;
    }
    if (req.socket.destroyed) {
      feed.close();
      streams.release();
      return;
    }

    const stream = SseStream.open(req, res, {
      maxBufferedBytes: config.maxBufferedBytes,
      clock: streams.timers,
      onSlowReader: () => {
        metrics.slowReadersCut.inc();
        log.info({ session_id: sessionId }, 'slow reader disconnected; it can resume from its last id');
      },
    });
    // Pinged while idle by the instance's one ticker; a session without a run yet expires there.
    let waiting = feed.status === 'waiting';
    streams.add(stream, waiting);
    metrics.streamsOpen.inc();
    stream.onClose(() => {
      feed.close();
      streams.remove(stream);
      metrics.streamsOpen.dec();
      log.debug({ session_id: sessionId }, 'stream closed');
    });

    const ready: ReadyPayload = { session_id: sessionId, status: feed.status };
    stream.ready(config.retryMs, JSON.stringify(ready));

    feed.start({
      entry: (entry) => {
        if (waiting) {
          waiting = false;
          streams.runStarted(stream);
        }
        if (entry.kind === 'done') {
          stream.named('done', entry.data, entry.id);
          stream.end();
        } else {
          stream.message(entry);
        }
      },
      gap: (gap) => stream.named('gap', JSON.stringify(gap)),
      backlog: () => stream.backlog(),
      held: (bytes) => stream.cutIfBehind(bytes),
      live: () => stream.goLive(),
      failed: (error) => {
        log.warn({ err: error, session_id: sessionId }, 'bus failed under a stream; ending it so the client resumes');
        stream.end();
      },
    });
  };
}
