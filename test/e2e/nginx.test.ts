import type { TimelineEvent } from '../../client-sdk/src/types';
import { executeAsync, expectJsonError, metricSample, parseRawResponse, postExecuteRaw, request, sendRaw } from '../helpers/api';
import { startNginx, type Nginx } from '../helpers/nginx';
import { freePort, startProcess, stopAllProcesses, type ListeningProcess } from '../helpers/process';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { execute, newSessionId, synthetic } from '../helpers/service';
import { isNamed, seqAtLeast, streamFollower, timelineEvents } from '../helpers/sse-reader';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';
import { range, seqs } from '../helpers/timeline-fixtures';
import { waitUntil } from '../helpers/wait';

/**
 * The deployment's path for real: a private `redis-server`, two compiled instances and a real
 * nginx running deploy/nginx.conf (only its upstream and listen lines changed) in front of
 * them, round-robin, as docker-compose.yml runs them.
 */

const KEEPALIVE_MS = 300;

let redis: RedisServer;
let a: ListeningProcess;
let b: ListeningProcess;
let nginx: Nginx;
const { follow, closeAll: closeStreams } = streamFollower();
const stops: Array<() => Promise<void>> = [];

beforeAll(async () => {
  redis = await startRedisServer();
  const env = { REDIS_URL: redis.url, KEEPALIVE_MS: String(KEEPALIVE_MS) };
  [a, b] = await Promise.all([startProcess(env), startProcess(env)]);
  nginx = await startNginx([a.port, b.port]);
});
afterEach(async () => {
  closeStreams();
  await Promise.all(stops.splice(0).map((stop) => stop()));
  // Every stream of the test is gone from both instances before the next test counts them.
  await waitUntil(async () => (await streamsOpen(a)) + (await streamsOpen(b)) === 0, { timeoutMs: 5000, label: 'no open streams' });
});
afterAll(async () => {
  await nginx?.stop();
  await stopAllProcesses();
  await redis?.stop();
});

const monoMs = () => Number(process.hrtime.bigint()) / 1e6;

async function metric(proc: ListeningProcess, sample: string): Promise<number> {
  const response = await request(`${proc.url}/metrics`);
  expect(response.status).toBe(200);
  return metricSample(response.text, sample);
}
const streamsOpen = (proc: ListeningProcess) => metric(proc, 'timeline_streams_open');
const runsCompleted = (proc: ListeningProcess) => metric(proc, 'timeline_runs_total{outcome="completed"}');

/** The one instance (read on its own port, not through nginx) where `count` went up by one. */
async function whichInstance(count: (proc: ListeningProcess) => Promise<number>, before: [number, number], label: string) {
  let after: [number, number] = before;
  await waitUntil(
    async () => {
      after = [await count(a), await count(b)];
      return after[0] + after[1] === before[0] + before[1] + 1;
    },
    { timeoutMs: 5000, label },
  );
  return after[0] > before[0] ? 'a' : 'b';
}

it('streams a run through nginx incrementally, once and in order, with the stream on one instance and the run on the other', async () => {
  const sessionId = newSessionId();
  const before = {
    streams: [await streamsOpen(a), await streamsOpen(b)] as [number, number],
    runs: [await runsCompleted(a), await runsCompleted(b)] as [number, number],
  };
  const reader = await follow(nginx.url, sessionId, { 'Accept-Encoding': 'gzip' });
  const streamOn = await whichInstance(streamsOpen, before.streams, 'the stream on one instance');

  // The stream's headers come through the proxy, and it is not compressed.
  expect(reader.status).toBe(200);
  expect(reader.headers['content-type']).toBe('text/event-stream');
  expect(reader.headers['cache-control']).toBe('no-cache, no-transform');
  expect(reader.headers['x-accel-buffering']).toBe('no');
  expect(reader.headers['content-encoding']).toBeUndefined();
  expect(reader.headers['content-length']).toBeUndefined();
  expect(reader.retry).toBe(2000);

  const events = 8;
  const intervalMs = 150;
  const run = execute(nginx.url, synthetic(sessionId, { events, interval_ms: intervalMs }));
  await reader.waitFor(seqAtLeast(2), 10000, 'the first synthetic event');
  const firstReceivedMs = monoMs();
  const response = await run;
  expect(response.status).toBe(200);
  expect(response.body).toMatchObject({ session_id: sessionId, status: 'completed', event_count: events + 2 });
  const done = await reader.waitFor(isNamed('done'), 10000, 'done');
  expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events } });

  // The run went to the other instance: round-robin, and the stream crossed over Redis.
  const runOn = await whichInstance(runsCompleted, before.runs, 'the run completed on one instance');
  expect({ streamOn, runOn }).toEqual({ streamOn, runOn: streamOn === 'a' ? 'b' : 'a' });

  // Every event once, in order, then done as the last frame.
  const received = timelineEvents<TimelineEvent>(reader);
  expect(seqs(received)).toEqual(range(1, events + 2));
  expect(new Set(received.map((event) => event.event_id)).size).toBe(received.length);
  expect(reader.frames.at(-1)).toBe(done);
  // Incremental, not one burst at the end: the first event was in the test's hands before
  // the instance sent the last one (monotonic clocks of one host compare across processes).
  const lastSentMs = (received.at(-2)?.details as { sent_mono_ms: number }).sent_mono_ms;
  expect(received.at(-2)?.details).toMatchObject({ i: events });
  expect(firstReceivedMs).toBeLessThan(lastSentMs);
  await reader.ended;
});

it('resumes through nginx with Last-Event-ID, with no duplicate and no gap', async () => {
  const sessionId = newSessionId();
  const first = await follow(nginx.url, sessionId);
  const accepted = await executeAsync(nginx.url, synthetic(sessionId, { events: 30, interval_ms: 30 }));
  expect(accepted.status).toBe(202);
  await first.waitFor(seqAtLeast(6), 10000, 'seq 6 before the drop');
  first.destroy();
  const seen = timelineEvents<TimelineEvent>(first);
  const lastId = seen.at(-1)?.event_id as string;

  const second = await follow(nginx.url, sessionId, { 'Last-Event-ID': lastId });
  const done = await second.waitFor(isNamed('done'), 10000, 'done after the resume');
  expect(JSON.parse(done.data)).toEqual({ status: 'completed', result: { events: 30 } });
  const resumed = timelineEvents<TimelineEvent>(second);
  expect(resumed[0].seq).toBe((seen.at(-1) as TimelineEvent).seq + 1);
  expect([...seqs(seen), ...seqs(resumed)]).toEqual(range(1, 32));
  expect(second.frames.filter(isNamed('gap'))).toEqual([]);
});

it('passes the keep-alive pings of an idle stream', async () => {
  const reader = await follow(nginx.url, newSessionId());
  // Two pings: the stream stays open and unbuffered while nothing else is written.
  await reader.waitForComments(2, 20 * KEEPALIVE_MS);
  expect(reader.comments.slice(0, 2)).toEqual(['ping', 'ping']);
  expect(reader.frames.map((frame) => frame.event)).toEqual(['ready']);
});

it('forwards Last-Event-ID and X-Forwarded-For/Proto to the instances over HTTP/1.1 keep-alive', async () => {
  // TCP proxies between nginx and the instances record the request heads nginx sends.
  const proxies: TcpProxy[] = await Promise.all([startTcpProxy(a.port), startTcpProxy(b.port)]);
  stops.push(...proxies.map((proxy) => () => proxy.close()));
  const recording = await startNginx(proxies.map((proxy) => proxy.port));
  stops.push(() => recording.stop());

  const sessionId = newSessionId();
  await follow(recording.url, sessionId, { 'Last-Event-ID': '1-0' });
  const heads = proxies.flatMap((proxy) => proxy.requests).filter((head) => head.path === `/timeline/stream/${sessionId}`);
  expect(heads).toHaveLength(1);
  expect(heads[0].headers).toMatchObject({
    'last-event-id': '1-0',
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    host: '127.0.0.1',
  });
  // HTTP/1.0 or a closing connection would say `Connection: close`; keep-alive says nothing.
  expect(heads[0].headers.connection).toBeUndefined();
});

it('does not pass /metrics on: the instances serve it on their own port, nginx answers 404', async () => {
  for (const path of ['/metrics', '/metrics?x=1']) expectJsonError(await request(`${nginx.url}${path}`), 404, 'not_found');
  // The instances themselves (no METRICS_PORT here) still serve it to whoever reaches them.
  expect((await request(`${a.url}/metrics`)).status).toBe(200);
});

it("answers nginx's own errors in the service's JSON shape", async () => {
  // A body over the limit never reaches an instance.
  const oversize = await postExecuteRaw(nginx.url, JSON.stringify({ project_id: 'p', query: 'x'.repeat(300 * 1024) }));
  expectJsonError(oversize, 413, 'payload_too_large');

  // Headers over nginx's buffers, and an HTTP/1.1 request without Host.
  const tooLarge = await sendRaw(nginx.url, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'x'.repeat(20 * 1024)}\r\n\r\n`);
  // nginx sends its "header too large" (494) as a 400 whatever the page says; the code tells.
  expect(parseRawResponse(tooLarge)).toMatchObject({ status: 400, headers: { 'content-type': 'application/json' } });
  expect(JSON.parse(parseRawResponse(tooLarge).body).error.code).toBe('headers_too_large');
  const malformed = parseRawResponse(await sendRaw(nginx.url, 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n'));
  expect({ status: malformed.status, code: JSON.parse(malformed.body).error.code }).toEqual({ status: 400, code: 'bad_request' });

  // No instance reachable.
  const deadPort = await freePort();
  const orphan = await startNginx([deadPort]);
  stops.push(() => orphan.stop());
  expectJsonError(await request(`${orphan.url}/healthz`), 502, 'bad_gateway');
});
