import { createParser } from 'eventsource-parser';
import type { DonePayload, DoneRecord, ExpiredPayload, GapPayload, ReadyPayload, TimelineEvent } from './types.js';

/** What a finished `GET /timeline/stream/:sessionId` response carried, by kind, each in wire order. */
export interface ParsedTimeline {
  /** `event: ready`, the stream's first event; `null` if the body has none (not a stream). */
  ready: ReadyPayload | null;
  /** The timeline events (default SSE messages). */
  events: TimelineEvent[];
  /** `event: done` with its SSE id; `null` if the stream ended without one. */
  done: DoneRecord | null;
  /** Each `event: gap`: events between `after` and `first_available` are gone from the log. */
  gaps: GapPayload[];
  /** `event: expired`: no run started within the server's idle timeout. */
  expired: ExpiredPayload | null;
}

function parseData<T>(data: string, what: string): T {
  try {
    return JSON.parse(data) as T;
  } catch (error) {
    throw new SyntaxError(`parseTimeline: the data of ${what} is not JSON: ${data.slice(0, 80)}`, { cause: error });
  }
}

/**
 * Parses the body of a finished stream response, as a test client buffers it (supertest:
 * `request(app).get(url).buffer(true).parse(...)`, see README), into its ready, events, done,
 * gaps and expired. Events of a name it does not know are skipped.
 */
export function parseTimeline(text: string): ParsedTimeline {
  if (typeof text !== 'string') {
    throw new TypeError(
      `parseTimeline: expected the response body as text, got ${text === null ? 'null' : typeof text} (buffer the stream response first)`,
    );
  }
  const timeline: ParsedTimeline = { ready: null, events: [], done: null, gaps: [], expired: null };
  const parser = createParser({
    onEvent({ event, id, data }) {
      switch (event) {
        case undefined:
          timeline.events.push(parseData<TimelineEvent>(data, `the event ${id ?? '(no id)'}`));
          break;
        case 'ready':
          timeline.ready = parseData<ReadyPayload>(data, 'event: ready');
          break;
        case 'done':
          timeline.done = { id: id ?? '', ...parseData<DonePayload>(data, 'event: done') };
          break;
        case 'gap':
          timeline.gaps.push(parseData<GapPayload>(data, 'event: gap'));
          break;
        case 'expired':
          timeline.expired = parseData<ExpiredPayload>(data, 'event: expired');
          break;
      }
    },
  });
  parser.feed(text);
  // A body ending in a lone CR ended its last line, but the parser waits for a possible LF.
  if (text.endsWith('\r')) parser.feed('\n');
  return timeline;
}
