/**
 * SSE wire frames (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 * Every value written here is single-line by construction: ids are validated event ids,
 * names are constants, and data is JSON (which escapes newlines), so no field can inject another.
 */
import type { LogEntry } from '../timeline/bus';

/** A default (unnamed) message: what a browser EventSource delivers as `message`. */
export function messageFrame(id: string, data: string): string {
  return `id: ${id}\ndata: ${data}\n\n`;
}

let lastEntry: LogEntry | null = null;
let lastFrame = Buffer.alloc(0);

/**
 * A timeline event's frame, encoded. A live entry reaches every reader of its session in one
 * synchronous fan-out (one `LogEntry` object for all of them), so the frame built last is the
 * one asked for next: N readers share one buffer, encoded once, and no retained log entry
 * (the memory bus keeps them) carries a second copy of its data.
 */
export function eventFrame(entry: LogEntry): Buffer {
  if (entry !== lastEntry) {
    lastFrame = Buffer.from(messageFrame(entry.id, entry.data));
    lastEntry = entry;
  }
  return lastFrame;
}

/** A named event; `id` only where a client should resume after it. */
export function namedFrame(name: string, data: string, id?: string): string {
  return id === undefined ? `event: ${name}\ndata: ${data}\n\n` : `event: ${name}\nid: ${id}\ndata: ${data}\n\n`;
}

export function retryField(ms: number): string {
  return `retry: ${ms}\n`;
}

export const PING_FRAME = ': ping\n\n';
