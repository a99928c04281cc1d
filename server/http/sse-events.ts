import { EventBuffer, type EventBufferOptions } from 'better-sse';
import type { ExpiredPayload } from '../../client-sdk/src/types';
import type { LogEntry } from '../timeline/bus';

/**
 * The stream's SSE events, written by better-sse's `EventBuffer`
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 *
 * Every value is single-line text already: data is JSON (which escapes newlines), ids are
 * validated event ids, names are constants. So better-sse's serializer passes it through as it
 * is (no second JSON encoding), and its sanitizer does no newline scan per field: it only puts
 * the conventional space after the colon (`id: 1-0`, `: ping`), which every SSE parser drops,
 * so the wire reads as the protocol documents it.
 */
export const PASS_THROUGH: EventBufferOptions = {
  serializer: (data) => data as string,
  sanitizer: (text) => ` ${text}`,
};

/** A log entry's event, and its size on the wire (for the reader's bound). */
export interface EncodedEntry {
  readonly event: EventBuffer;
  readonly bytes: number;
}

/**
 * What `entryEvent` encoded last. A live entry reaches every reader of its session on this
 * instance in one synchronous fan-out (one `LogEntry` object for all of them), so the entry
 * encoded last is the one asked for next: N readers send one event, encoded once, as text
 * (`event`) and as bytes (`wire`, what `wireChunk` hands the sockets in its place).
 */
const lastEncoded = {
  entry: null as LogEntry | null,
  event: new EventBuffer(PASS_THROUGH),
  text: '',
  wire: Buffer.alloc(0),
  bytes: 0,
};

/**
 * A timeline event as a default (unnamed) message with its id, or `done` as a named event
 * with its id (a client resumes after it, and a reconnect with it gets `204`).
 */
export function entryEvent(entry: LogEntry): EncodedEntry {
  if (lastEncoded.entry !== entry) {
    const event = lastEncoded.event.clear();
    if (entry.kind === 'done') event.event('done');
    event.id(entry.id).data(entry.data).dispatch();
    lastEncoded.entry = entry;
    lastEncoded.text = event.read();
    lastEncoded.wire = Buffer.from(lastEncoded.text);
    lastEncoded.bytes = lastEncoded.wire.length;
  }
  return lastEncoded;
}

/**
 * What to write to a socket for a chunk better-sse sends: the bytes of the entry event
 * encoded last when it is that one (one buffer queued by every reader: a socket that does not
 * drain holds a reference to it, not a copy), else the text.
 */
export function wireChunk(chunk: string): string | Buffer {
  return chunk === lastEncoded.text ? lastEncoded.wire : chunk;
}

/** One-off events are built here and sent at once: each call overwrites the last. */
const scratch = new EventBuffer(PASS_THROUGH);

/** The first frame: the reconnection delay with `event: ready` (no id: it must not become the Last-Event-ID). */
export function readyEvent(retryMs: number, data: string): EventBuffer {
  return scratch.clear().retry(retryMs).event('ready').data(data).dispatch();
}

/** A named event without an id (`gap`, `expired`): not a position a client resumes from. */
export function namedEvent(name: string, data: string): EventBuffer {
  return scratch.clear().event(name).data(data).dispatch();
}

/**
 * A `retry:` field alone: no event is dispatched for it, the client only takes the new
 * reconnection delay (the shutdown hand-over).
 */
export function retryEvent(retryMs: number): EventBuffer {
  return scratch.clear().retry(retryMs).dispatch();
}

export const EXPIRED_DATA = JSON.stringify({ code: 'idle_timeout' } satisfies ExpiredPayload);

/** The keep-alive comment. */
export const PING = new EventBuffer(PASS_THROUGH).comment('ping').dispatch();
