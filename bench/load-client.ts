/**
 * The load client: a process of its own (so its CPU is not the servers'), driven by the
 * bench runner over IPC. It opens SSE streams, waits for each `ready`, then starts runs with
 * `POST /execute` (`Prefer: respond-async`) and measures what arrives on the streams.
 * The SSE parser is a minimal hand-written one: the client must stay cheaper than the
 * servers it measures.
 */
import http from 'node:http';
import type { TimelineEvent } from '../client-sdk/src/types';
import type { FromClient, RunMeasurement, RunSpec, ToClient } from './protocol';

const monoMs = () => Number(process.hrtime.bigint()) / 1e6;

interface StreamState {
  sessionId: string;
  req: http.ClientRequest;
  nextI: number;
  messages: number;
  duplicates: number;
  sawStart: boolean;
  sawComplete: boolean;
  closed: boolean;
  postSentAt: number | null;
  firstEventAt: number | null;
  /** When `done` arrived; `null` until it does. */
  doneAt: number | null;
  onReady: (() => void) | null;
  onFinish: (() => void) | null;
}

const streamAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const postAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const streams = new Map<string, StreamState>();

/** Filled while a run is measured: samples of the sessions that run. */
let latencies: number[] = [];
let events = 0;

function send(message: FromClient): void {
  process.send?.(message);
}

function finish(state: StreamState): void {
  state.onFinish?.();
  state.onFinish = null;
}

/** Stalled readers (`stall`): open, never read after their `ready`. */
const stalled: http.ClientRequest[] = [];

function onFrame(state: StreamState, frame: string, now: number): void {
  let event: string | undefined;
  let data = '';
  for (const line of frame.split('\n')) {
    // A field is `name:value`, one space after the colon optional; a comment starts with `:`.
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1);
    if (colon === 4 && line.startsWith('data')) data = value;
    else if (colon === 5 && line.startsWith('event')) event = value;
  }
  if (event === undefined) {
    if (data === '') return; // a comment (`: ping`) or a bare `retry:`
    const parsed = JSON.parse(data) as TimelineEvent & { details?: { i?: number; sent_mono_ms?: number } };
    events += 1;
    state.firstEventAt ??= now;
    if (parsed.type === 'WORKFLOW_START') state.sawStart = true;
    else if (parsed.type === 'WORKFLOW_COMPLETE') state.sawComplete = true;
    else if (parsed.type === 'AGENT_MESSAGE' && parsed.details?.i !== undefined) {
      const i = parsed.details.i;
      if (i === state.nextI) {
        state.nextI += 1;
        state.messages += 1;
      } else if (i < state.nextI) {
        state.duplicates += 1;
      } else {
        // Ahead of the expected one: the ones between are missing (counted at the end).
        state.nextI = i + 1;
        state.messages += 1;
      }
      if (parsed.details.sent_mono_ms !== undefined) latencies.push(now - parsed.details.sent_mono_ms);
    }
  } else if (event === 'ready') {
    state.onReady?.();
    state.onReady = null;
  } else if (event === 'done') {
    state.doneAt = now;
    finish(state);
  }
}

function openStream(base: string, sessionId: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/timeline/stream/${sessionId}`, {
      agent: streamAgent,
      headers: { Accept: 'text/event-stream' },
    });
    const state: StreamState = {
      sessionId,
      req,
      nextI: 1,
      messages: 0,
      duplicates: 0,
      sawStart: false,
      sawComplete: false,
      closed: false,
      postSentAt: null,
      firstEventAt: null,
      doneAt: null,
      onReady: null,
      onFinish: null,
    };
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no ready within ${timeoutMs} ms`));
    }, timeoutMs);
    state.onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    streams.set(sessionId, state);
    req.once('error', (error) => {
      clearTimeout(timer);
      state.closed = true;
      finish(state);
      reject(error);
    });
    req.once('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        res.resume();
        req.destroy();
        reject(new Error(`stream answered ${res.statusCode}`));
        return;
      }
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const now = monoMs();
        buffer += chunk;
        let start = 0;
        for (let end = buffer.indexOf('\n\n', start); end !== -1; end = buffer.indexOf('\n\n', start)) {
          onFrame(state, buffer.slice(start, end), now);
          start = end + 2;
        }
        buffer = start === 0 ? buffer : buffer.slice(start);
      });
      res.once('close', () => {
        state.closed = true;
        finish(state);
      });
    });
  });
}

/** Opens a stream, waits for its `ready` frame, then stops reading it for good. */
function openStalled(base: string, sessionId: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/timeline/stream/${sessionId}`, { agent: streamAgent, headers: { Accept: 'text/event-stream' } });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no ready within ${timeoutMs} ms`));
    }, timeoutMs);
    req.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.once('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        res.resume();
        req.destroy();
        reject(new Error(`stream answered ${res.statusCode}`));
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      const onData = (chunk: string) => {
        text += chunk;
        if (!/(^|\n)event: ?ready\n[^]*?\n\n/.test(text)) return;
        clearTimeout(timer);
        res.off('data', onData);
        // From here on nothing reads it: the socket's buffers fill, then the server's.
        res.pause();
        stalled.push(req);
        resolve();
      };
      res.on('data', onData);
      res.on('error', () => undefined);
    });
  });
}

async function openAll(
  base: string,
  sessionIds: string[],
  concurrency: number,
  timeoutMs: number,
  open: (base: string, sessionId: string, timeoutMs: number) => Promise<void> = openStream,
): Promise<void> {
  let next = 0;
  let failed = 0;
  const errors: string[] = [];
  const worker = async () => {
    while (next < sessionIds.length) {
      const sessionId = sessionIds[next++];
      try {
        await open(base, sessionId, timeoutMs);
      } catch (error) {
        failed += 1;
        if (errors.length < 5) errors.push(`open ${sessionId}: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, sessionIds.length) }, worker));
  send({ type: 'opened', failed, errors });
}

function post(postBase: string, run: RunSpec): Promise<number> {
  const body = JSON.stringify({
    project_id: 'bench',
    query: 'bench',
    session_id: run.sessionId,
    workflow: 'synthetic',
    params: { events: run.events, interval_ms: run.intervalMs, payload_bytes: run.payloadBytes },
  });
  return new Promise((resolve, reject) => {
    const req = http.request(`${postBase}/execute`, {
      method: 'POST',
      agent: postAgent,
      headers: { 'Content-Type': 'application/json', Prefer: 'respond-async', 'Content-Length': Buffer.byteLength(body) },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.end(body);
  });
}

async function runAll(postBase: string, runs: RunSpec[], timeoutMs: number): Promise<void> {
  latencies = [];
  events = 0;
  const errors: string[] = [];
  let postFailures = 0;
  const states = runs.map((run) => {
    const state = streams.get(run.sessionId);
    if (!state) throw new Error(`no stream open for ${run.sessionId}`);
    return state;
  });
  const finished = states.map(
    (state) =>
      new Promise<void>((resolve) => {
        if (state.doneAt !== null || state.closed) resolve();
        else state.onFinish = resolve;
      }),
  );
  const started = monoMs();
  await Promise.all(
    runs.map(async (run, index) => {
      states[index].postSentAt = monoMs();
      try {
        const status = await post(postBase, run);
        if (status !== 202) throw new Error(`POST /execute answered ${status}`);
      } catch (error) {
        postFailures += 1;
        if (errors.length < 5) errors.push(`${run.sessionId}: ${(error as Error).message}`);
        finish(states[index]);
      }
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    Promise.all(finished).then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  const lastDone = Math.max(...states.map((state) => state.doneAt ?? monoMs()));
  let missing = 0;
  let duplicates = 0;
  let completeSessions = 0;
  const ttfeMs: number[] = [];
  states.forEach((state, index) => {
    const expected = runs[index].events;
    missing += Math.max(0, expected - state.messages);
    duplicates += state.duplicates;
    const complete =
      state.doneAt !== null && state.sawStart && state.sawComplete && state.messages === expected && state.duplicates === 0;
    if (complete) completeSessions += 1;
    else if (errors.length < 5) {
      errors.push(
        `${state.sessionId}: done=${state.doneAt !== null} closed=${state.closed} messages=${state.messages}/${expected} dup=${state.duplicates}`,
      );
    }
    if (state.firstEventAt !== null && state.postSentAt !== null) ttfeMs.push(state.firstEventAt - state.postSentAt);
  });
  const measurement: RunMeasurement = {
    sessions: runs.length,
    completeSessions,
    missing,
    duplicates,
    events,
    postFailures,
    elapsedMs: lastDone - started,
    latencyMs: latencies,
    ttfeMs,
    timedOut,
    errors,
  };
  for (const state of states) streams.delete(state.sessionId);
  send({ type: 'result', measurement });
}

function closeAll(): void {
  for (const state of streams.values()) state.req.destroy();
  streams.clear();
  for (const req of stalled.splice(0)) req.destroy();
  send({ type: 'closed' });
}

process.on('message', (message: ToClient) => {
  const work =
    message.type === 'open'
      ? openAll(message.base, message.sessionIds, message.concurrency, message.timeoutMs)
      : message.type === 'stall'
        ? openAll(message.base, message.sessionIds, message.concurrency, message.timeoutMs, openStalled)
        : message.type === 'run'
        ? runAll(message.postBase, message.runs, message.timeoutMs)
        : Promise.resolve(closeAll());
  work.catch((error: unknown) => send({ type: 'error', message: String(error) }));
});
process.on('disconnect', () => process.exit(0));
