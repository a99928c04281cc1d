import type { FetchLike } from '@timeline/client';

/** The stream's connection as a person should see it. */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting';

const STREAM_PATH = /\/timeline\/stream\/[^/?]+$/;

/**
 * A `fetch` for the SDK that reports the stream's connection state. The SDK resumes a dropped
 * stream by itself and tells its caller only how the run ended; a page should also say
 * "reconnecting…" in between. A stream request that fails, or whose body breaks or ends
 * before the run finished, means the SDK is about to resume; the next `200` means it did.
 */
export function watchStreamConnection(
  onState: (state: ConnectionState) => void,
  isFinished: () => boolean,
  base: FetchLike = (url, init) => fetch(url, init),
): FetchLike {
  const report = (state: ConnectionState) => {
    if (!isFinished()) onState(state);
  };
  return async (url, init) => {
    if (!STREAM_PATH.test(new URL(url, location.href).pathname)) return base(url, init);
    let response: Response;
    try {
      response = await base(url, init);
    } catch (error) {
      report('reconnecting');
      throw error;
    }
    if (response.status !== 200 || !response.body) {
      // 204 ends the run (its `done` is read from the history); anything else is retried or fatal.
      if (response.status !== 204) report('reconnecting');
      return response;
    }
    report('live');
    return new Response(observeEnd(response.body, () => report('reconnecting')), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/** The same bytes, plus a call when the body ends or breaks. */
function observeEnd(body: ReadableStream<Uint8Array>, onEnd: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        onEnd();
        controller.error(error);
        return;
      }
      if (chunk.done) {
        onEnd();
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
