import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { ExpiredPayload, ReadyPayload } from '../../client-sdk/src/types';
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
  config: Pick<Config, 'retryMs' | 'keepAliveMs' | 'streamIdleTimeoutMs' | 'maxBufferedBytes'>;
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
      throw new HttpError(503, 'too_many_streams', 'This instance has too many open streams', {
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

    const streamLog = log.child({ session_id: sessionId });
    const stream = await SseStream.open(req, res, {
      maxBufferedBytes: config.maxBufferedBytes,
      onSlowReader: () => {
        metrics.slowReadersCut.inc();
        streamLog.info('slow reader disconnected; it can resume from its last id');
      },
    });
    const unregister = streams.add((retryMs) => stream.redirect(retryMs));
    metrics.streamsOpen.inc();

    let idleTimer: NodeJS.Timeout | undefined;
    let keepAlive: NodeJS.Timeout | undefined;
    stream.onClose(() => {
      feed.close();
      clearTimeout(idleTimer);
      clearInterval(keepAlive);
      unregister();
      metrics.streamsOpen.dec();
      streamLog.debug('stream closed');
    });

    const ready: ReadyPayload = { session_id: sessionId, status: feed.status };
    stream.ready(config.retryMs, JSON.stringify(ready));

    if (feed.status === 'waiting' && config.streamIdleTimeoutMs !== null) {
      idleTimer = setTimeout(() => {
        const expired: ExpiredPayload = { code: 'idle_timeout' };
        stream.named('expired', JSON.stringify(expired));
        stream.end();
      }, config.streamIdleTimeoutMs);
    }
    if (config.keepAliveMs !== null) {
      keepAlive = setInterval(() => stream.keepAliveTick(), config.keepAliveMs);
    }

    feed.start({
      entry: (entry) => {
        clearTimeout(idleTimer);
        if (entry.kind === 'done') {
          stream.named('done', entry.data, entry.id);
          stream.end();
        } else {
          stream.message(entry.id, entry.data);
        }
      },
      gap: (gap) => stream.named('gap', JSON.stringify(gap)),
      backlog: () => stream.backlog(),
      held: (bytes) => stream.cutIfBehind(bytes),
      live: () => stream.goLive(),
      failed: (error) => {
        streamLog.warn({ err: error }, 'bus failed under a stream; ending it so the client resumes');
        stream.end();
      },
    });
  };
}
