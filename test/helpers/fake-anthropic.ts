import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Waiters } from './wait';

/**
 * A local stand-in for the Anthropic Messages API: a real node:http server that speaks the
 * streaming wire format (`message_start`, `content_block_*`, `message_delta`, `message_stop`,
 * `ping`, `error`), so the real SDK can be tested with no network and no mocks.
 * See https://docs.anthropic.com/en/api/messages-streaming for the format.
 */

/** One thing the server does while it answers a streaming request. */
export type StreamStep =
  | { kind: 'event'; event: string; data: unknown }
  | { kind: 'wait'; ms: number }
  /** Destroys the socket mid-response, like a dropped connection. */
  | { kind: 'cut' }
  /** Sends nothing more and keeps the connection open until the client closes it. */
  | { kind: 'hang' }
  /** Pauses until the test calls `release(index)` for this request. */
  | { kind: 'gate' };

/** How the server answers one request. */
export type Reply =
  | { kind: 'stream'; steps: StreamStep[] }
  | { kind: 'status'; status: number; body: unknown; headers?: Record<string, string> }
  /** Destroys the socket before any response. */
  | { kind: 'cut' };

export interface MessagesBody {
  model: string;
  max_tokens: number;
  system?: string;
  messages: Array<{ role: string; content: unknown }>;
  stream?: boolean;
}

export interface RecordedRequest {
  /** 0-based, in arrival order. */
  index: number;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: MessagesBody;
  /** The reply the server chose for it. */
  reply: Reply;
  /** Resolves when the connection of this request closed, for whatever reason. */
  closed: Promise<void>;
  /** True once the client went away before the server finished (or cut) the response. */
  closedByClient: boolean;
  /** Text deltas written so far. */
  deltasSent: number;
}

export type Responder = (body: MessagesBody, request: RecordedRequest) => Reply;

export interface FakeAnthropic {
  /** Base URL for the SDK (`baseURL` / `ANTHROPIC_BASE_URL`). */
  url: string;
  /** The key it accepts; any other gets `401 authentication_error`. */
  apiKey: string;
  requests: RecordedRequest[];
  /** Replies for the next requests, in order; after them, the responder answers. */
  enqueue(...replies: Reply[]): void;
  /** Answers requests once the queue is empty. Defaults to `textReply('Hello from the fake.')`. */
  respond(responder: Responder): void;
  /** Resolves with the request of index `index` once it has arrived. */
  request(index: number, timeoutMs?: number): Promise<RecordedRequest>;
  /** Resolves once request `index` has written at least `count` text deltas. */
  deltasSent(index: number, count: number, timeoutMs?: number): Promise<RecordedRequest>;
  /** Forgets recorded requests and queued replies (the responder stays), for the next test. */
  reset(): void;
  /** Lets request `index` go on past its `gate` step (now, or when it gets there). */
  release(index: number): void;
  /** Drops the connection of request `index` now (e.g. one left hanging by `hangAfter`). */
  cut(index: number): void;
  close(): Promise<void>;
}

const sse = (event: string, data: unknown): StreamStep => ({ kind: 'event', event, data });

export interface TextReplyOptions {
  /** Delay before each delta, in milliseconds. Defaults to `0`. */
  delayMs?: number;
  inputTokens?: number;
  /** Defaults to the number of deltas. */
  outputTokens?: number;
  model?: string;
  stopReason?: string;
}

/** The events of a normal answer, `text` split into word-sized deltas (or given as deltas). */
export function textSteps(text: string | string[], options: TextReplyOptions = {}): StreamStep[] {
  const deltas = typeof text === 'string' ? (text.match(/\s*\S+/g) ?? []) : text;
  const delay = options.delayMs ?? 0;
  return [
    ...openingSteps(options),
    ...deltas.flatMap((delta, k) => [
      ...(delay > 0 ? [{ kind: 'wait', ms: delay } as const] : []),
      ...(k === 1 ? [sse('ping', { type: 'ping' })] : []),
      deltaStep(delta),
    ]),
    ...closingSteps(options.outputTokens ?? deltas.length, options.stopReason),
  ];
}

export function openingSteps(options: TextReplyOptions = {}): StreamStep[] {
  return [
    sse('message_start', {
      type: 'message_start',
      message: {
        id: 'msg_fake_1',
        type: 'message',
        role: 'assistant',
        content: [],
        model: options.model ?? 'claude-fake',
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: options.inputTokens ?? 11, output_tokens: 1 },
      },
    }),
    sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
  ];
}

export function closingSteps(outputTokens: number, stopReason = 'end_turn'): StreamStep[] {
  return [
    sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
    sse('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: outputTokens },
    }),
    sse('message_stop', { type: 'message_stop' }),
  ];
}

export function deltaStep(text: string): StreamStep {
  return sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
}

/** A streamed answer of `text`. */
export function textReply(text: string | string[], options: TextReplyOptions = {}): Reply {
  return { kind: 'stream', steps: textSteps(text, options) };
}

/** Starts an answer with `before` deltas, then sends an `error` event (the HTTP status stays 200). */
export function midStreamError(before: string[], type: string, message: string): Reply {
  return {
    kind: 'stream',
    steps: [...openingSteps(), ...before.map(deltaStep), sse('error', { type: 'error', error: { type, message } })],
  };
}

/** A normal answer that pauses after `before` deltas until the test releases it. */
export function gatedReply(before: string[], after: string[], options: TextReplyOptions = {}): Reply {
  const steps = textSteps([...before, ...after], options);
  let deltas = 0;
  const gateAt = steps.findIndex((step) => isDelta(step) && ++deltas === before.length) + 1;
  return { kind: 'stream', steps: [...steps.slice(0, gateAt), { kind: 'gate' }, ...steps.slice(gateAt)] };
}

function isDelta(step: StreamStep): boolean {
  return step.kind === 'event' && step.event === 'content_block_delta';
}

/** Starts an answer with `before` deltas, then drops the connection. */
export function cutAfter(before: string[]): Reply {
  return { kind: 'stream', steps: [...openingSteps(), ...before.map(deltaStep), { kind: 'cut' }] };
}

/** Starts an answer with `before` deltas, then goes silent with the connection open. */
export function hangAfter(before: string[]): Reply {
  return { kind: 'stream', steps: [...openingSteps(), ...before.map(deltaStep), { kind: 'hang' }] };
}

/** An HTTP error in the API's JSON error shape. */
export function errorReply(status: number, type: string, message: string, headers: Record<string, string> = {}): Reply {
  return {
    kind: 'status',
    status,
    body: { type: 'error', error: { type, message }, request_id: 'req_fake' },
    headers,
  };
}

export const overloaded = (headers: Record<string, string> = {}): Reply =>
  errorReply(529, 'overloaded_error', 'Overloaded', headers);

export const rateLimited = (headers: Record<string, string> = {}): Reply =>
  errorReply(429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', headers);

/** Starts a fake on a free port of 127.0.0.1. */
export async function startFakeAnthropic(options: { apiKey?: string } = {}): Promise<FakeAnthropic> {
  const apiKey = options.apiKey ?? 'sk-ant-test-key';
  const queue: Reply[] = [];
  let responder: Responder = () => textReply('Hello from the fake.');
  const requests: RecordedRequest[] = [];
  const cutters = new Map<number, () => void>();
  const gates = new Map<number, () => void>();
  const released = new Set<number>();
  const waiters = new Waiters();
  const notify = () => waiters.notify();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as MessagesBody;
      let closedResolve: () => void = () => undefined;
      const recorded: RecordedRequest = {
        index: requests.length,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        reply: { kind: 'cut' },
        closed: new Promise<void>((resolve) => (closedResolve = resolve)),
        closedByClient: false,
        deltasSent: 0,
      };
      let serverDone = false;
      res.once('close', () => {
        if (!serverDone && !res.writableFinished) recorded.closedByClient = true;
        closedResolve();
        notify();
      });
      const authorised = req.headers['x-api-key'] === apiKey || req.headers.authorization === `Bearer ${apiKey}`;
      recorded.reply = !authorised
        ? errorReply(401, 'authentication_error', 'invalid x-api-key')
        : req.method !== 'POST' || !req.url?.startsWith('/v1/messages')
          ? errorReply(404, 'not_found_error', `Not found: ${req.method} ${req.url}`)
          : (queue.shift() ?? responder(body, recorded));
      requests.push(recorded);
      cutters.set(recorded.index, () => {
        serverDone = true;
        res.socket?.destroy();
      });
      notify();
      void play(recorded, res, () => (serverDone = true)).then(notify);
    });
  });

  const play = async (recorded: RecordedRequest, res: http.ServerResponse, markDone: () => void) => {
    const { reply } = recorded;
    if (reply.kind === 'cut') {
      markDone();
      res.socket?.destroy();
      return;
    }
    if (reply.kind === 'status') {
      markDone();
      res.writeHead(reply.status, { 'Content-Type': 'application/json', 'request-id': 'req_fake', ...reply.headers });
      res.end(JSON.stringify(reply.body));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'request-id': 'req_fake' });
    res.flushHeaders();
    for (const step of reply.steps) {
      if (res.destroyed) return;
      if (step.kind === 'wait') {
        await pause(step.ms, recorded.closed);
      } else if (step.kind === 'gate') {
        if (!released.has(recorded.index)) {
          await Promise.race([new Promise<void>((resolve) => gates.set(recorded.index, resolve)), recorded.closed]);
        }
      } else if (step.kind === 'hang') {
        return;
      } else if (step.kind === 'cut') {
        markDone();
        res.socket?.destroy();
        return;
      } else {
        res.write(`event: ${step.event}\ndata: ${JSON.stringify(step.data)}\n\n`);
        if (isDelta(step)) recorded.deltasSent += 1;
        notify();
      }
    }
    markDone();
    res.end();
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    requests,
    enqueue: (...replies) => queue.push(...replies),
    respond: (next) => (responder = next),
    request: (index, timeoutMs = 5000) =>
      waiters.until(() => requests[index], timeoutMs, () => `request ${index} to reach the fake Anthropic API`),
    deltasSent: (index, count, timeoutMs = 5000) =>
      waiters.until(
        () => (requests[index] && requests[index].deltasSent >= count ? requests[index] : undefined),
        timeoutMs,
        () => `${count} deltas on request ${index} of the fake Anthropic API`,
      ),
    reset: () => {
      requests.length = 0;
      queue.length = 0;
      cutters.clear();
      gates.clear();
      released.clear();
    },
    release: (index) => {
      released.add(index);
      gates.get(index)?.();
      gates.delete(index);
    },
    cut: (index) => {
      const cut = cutters.get(index);
      if (!cut) throw new Error(`fake anthropic: no request ${index} to cut`);
      cut();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Waits `ms`, or less if the connection closes first. */
function pause(ms: number, closed: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), closed]).finally(() =>
    clearTimeout(timer),
  );
}
