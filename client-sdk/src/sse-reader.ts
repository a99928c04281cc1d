import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** What one SSE response body carries, in wire order. */
export type SseItem =
  | { kind: 'message'; message: EventSourceMessage }
  | { kind: 'retry'; ms: number }
  | { kind: 'comment'; text: string };

/**
 * Reads an SSE body (https://html.spec.whatwg.org/multipage/server-sent-events.html) as it
 * arrives. Chunks may split anywhere, even inside a UTF-8 character; `onBytes` runs for every
 * chunk so a stall timer can count keep-alive comments as life. Leaving the loop early
 * cancels the body.
 */
export async function* readSse(body: ReadableStream<Uint8Array>, onBytes?: () => void): AsyncGenerator<SseItem> {
  const pending: SseItem[] = [];
  const parser = createParser({
    onEvent: (message) => pending.push({ kind: 'message', message }),
    onRetry: (ms) => pending.push({ kind: 'retry', ms }),
    onComment: (text) => pending.push({ kind: 'comment', text }),
  });
  const decoder = new TextDecoder();
  // A reader loop, not `for await` over the body: Safari's ReadableStream is not async-iterable.
  const reader = body.getReader();
  let endsWithCr = false;
  const feed = (text: string) => {
    if (text === '') return;
    endsWithCr = text.endsWith('\r');
    parser.feed(text);
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      onBytes?.();
      feed(decoder.decode(value, { stream: true }));
      yield* pending.splice(0);
    }
    feed(decoder.decode());
    // A lone CR ends a line, but the parser waits to see whether LF follows; at the end of the
    // body nothing will. (A half-received event is still dropped, as the spec says.)
    if (endsWithCr) parser.feed('\n');
    yield* pending.splice(0);
  } finally {
    // Closes the connection when the caller stops early; after a normal end it is a no-op.
    // A body that already failed rejects here too, and that failure was reported by `read()`.
    reader.cancel().catch(() => undefined);
  }
}
