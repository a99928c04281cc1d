/**
 * The raw baseline the service is measured against: the thinnest correct hand-rolled
 * Redis pub/sub + SSE server with the service's two endpoints. node:http, one ioredis
 * PUBLISH per event, one shared subscriber connection (a channel per session, subscribed
 * while it has readers), SSE frames written by hand. No replay, no validation, no run lock,
 * no log: what a team would write in an afternoon, and what durable replay must not cost
 * much more than.
 *
 * Env: `REDIS_URL`, `PORT`.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import Redis from 'ioredis';

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const port = Number(process.env.PORT ?? 3100);
const KEEPALIVE_MS = 15000;

const publisher = new Redis(redisUrl);
const subscriber = new Redis(redisUrl);
/** Open responses by channel. */
const readers = new Map<string, Set<http.ServerResponse>>();
/** Resolves once Redis acknowledged the channel's SUBSCRIBE. */
const subscribed = new Map<string, Promise<unknown>>();

// The published message is the finished SSE frame: readers write it as it is.
subscriber.on('message', (channel: string, frame: string) => {
  const set = readers.get(channel);
  if (!set) return;
  const last = frame.startsWith('event: done');
  for (const res of set) {
    res.write(frame);
    if (last) res.end();
  }
});

const channelOf = (sessionId: string) => `baseline:${sessionId}`;

async function stream(sessionId: string, res: http.ServerResponse): Promise<void> {
  const channel = channelOf(sessionId);
  let set = readers.get(channel);
  if (!set) {
    set = new Set();
    readers.set(channel, set);
    subscribed.set(channel, subscriber.subscribe(channel));
  }
  set.add(res);
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache, no-transform',
    'X-Accel-Buffering': 'no',
    Connection: 'keep-alive',
  });
  const members = set;
  // A timer per stream, as a hand-rolled server usually has: one shared timer would write
  // every stream's ping in one burst, stalling live events at 10,000 streams.
  const ping = setInterval(() => res.write(': ping\n\n'), KEEPALIVE_MS);
  res.on('close', () => {
    clearInterval(ping);
    members.delete(res);
    if (members.size === 0 && readers.get(channel) === members) {
      readers.delete(channel);
      subscribed.delete(channel);
      subscriber.unsubscribe(channel).catch(() => undefined);
    }
  });
  await subscribed.get(channel);
  res.write(`retry: 2000\nevent: ready\ndata: ${JSON.stringify({ session_id: sessionId, status: 'waiting' })}\n\n`);
}

let idCounter = 0;
const nextId = () => `${Date.now()}-${idCounter++}`;

async function publish(sessionId: string, seq: number, fields: Record<string, unknown>): Promise<void> {
  const id = nextId();
  const event = { event_id: id, session_id: sessionId, seq, ...fields, timestamp: new Date().toISOString() };
  await publisher.publish(channelOf(sessionId), `id: ${id}\ndata: ${JSON.stringify(event)}\n\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The synthetic workflow's shape (server/workflows/synthetic.ts), published straight to Redis. */
async function runSynthetic(sessionId: string, params: { events?: number; interval_ms?: number; payload_bytes?: number }) {
  const events = params.events ?? 10;
  const interval = params.interval_ms ?? 0;
  const pad = 'x'.repeat(params.payload_bytes ?? 0);
  const startedAt = Date.now();
  let seq = 0;
  await publish(sessionId, ++seq, { type: 'WORKFLOW_START', status: 'IN_PROGRESS', message: 'Workflow synthetic started' });
  for (let i = 1; i <= events; i++) {
    if (i > 1 && interval > 0) await sleep(interval);
    await publish(sessionId, ++seq, {
      type: 'AGENT_MESSAGE',
      status: i === events ? 'SUCCESS' : 'IN_PROGRESS',
      message: `Synthetic event ${i}/${events}`,
      agent_name: 'synthetic',
      details: { i, sent_at: Date.now(), sent_mono_ms: Number(process.hrtime.bigint()) / 1e6, pad },
    });
  }
  const result = { events };
  await publish(sessionId, ++seq, {
    type: 'WORKFLOW_COMPLETE',
    status: 'SUCCESS',
    message: 'Workflow synthetic completed',
    details: { result, duration_ms: Date.now() - startedAt },
  });
  const doneId = nextId();
  await publisher.publish(
    channelOf(sessionId),
    `event: done\nid: ${doneId}\ndata: ${JSON.stringify({ status: 'completed', result })}\n\n`,
  );
  return { seq, result, startedAt };
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function execute(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = JSON.parse(await readBody(req)) as { session_id?: string; params?: Record<string, number> };
  const sessionId = body.session_id ?? randomUUID();
  const run = runSynthetic(sessionId, body.params ?? {});
  if (/respond-async/i.test(String(req.headers.prefer ?? ''))) {
    json(res, 202, { session_id: sessionId, stream_url: `/timeline/stream/${sessionId}` });
    await run;
    return;
  }
  const { seq, result, startedAt } = await run;
  json(res, 200, { session_id: sessionId, status: 'completed', result, event_count: seq, duration_ms: Date.now() - startedAt });
}

const STREAM_PATH = '/timeline/stream/';

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  let work: Promise<void> | null = null;
  if (req.method === 'GET' && url.startsWith(STREAM_PATH)) work = stream(url.slice(STREAM_PATH.length).toLowerCase(), res);
  else if (req.method === 'POST' && url === '/execute') work = execute(req, res);
  else if (url === '/readyz' || url === '/healthz') json(res, 200, { status: 'ok' });
  else json(res, 404, { error: { code: 'not_found', message: 'Not found' } });
  work?.catch((error: unknown) => {
    if (!res.headersSent) json(res, 500, { error: { code: 'internal_error', message: String(error) } });
    else res.destroy();
  });
});
server.listen(port);

process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  publisher.disconnect();
  subscriber.disconnect();
  process.exit(0);
});
