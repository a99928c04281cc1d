/**
 * SSE wire frames (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 * Every value written here is single-line by construction: ids are validated event ids,
 * names are constants, and data is JSON (which escapes newlines), so no field can inject another.
 */

/** A default (unnamed) message: what a browser EventSource delivers as `message`. */
export function messageFrame(id: string, data: string): string {
  return `id: ${id}\ndata: ${data}\n\n`;
}

/** A named event; `id` only where a client should resume after it. */
export function namedFrame(name: string, data: string, id?: string): string {
  return id === undefined ? `event: ${name}\ndata: ${data}\n\n` : `event: ${name}\nid: ${id}\ndata: ${data}\n\n`;
}

export function retryField(ms: number): string {
  return `retry: ${ms}\n`;
}

export const PING_FRAME = ': ping\n\n';
