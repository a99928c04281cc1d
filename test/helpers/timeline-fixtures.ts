import type { GapPayload } from '../../client-sdk/src/types';
import type { EventDraft, LogEntry } from '../../server/timeline/bus';
import type { FeedSink } from '../../server/timeline/session-feed';

/** An event draft as a run owner publishes it (its details need JSON escaping on the wire). */
export function draft(sessionId: string, seq: number): EventDraft {
  return {
    session_id: sessionId,
    seq,
    type: 'AGENT_MESSAGE',
    status: 'IN_PROGRESS',
    message: `step ${seq}`,
    agent_name: 'tester',
    details: { i: seq, text: 'line "quoted"\nnext' },
    timestamp: new Date(1_700_000_000_000 + seq).toISOString(),
  };
}

/** `from`, `from + 1`, …, `to`: the seqs a complete, ordered timeline has. */
export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

export const seqs = (events: Array<{ seq: number }>): number[] => events.map((event) => event.seq);

/**
 * A `SessionFeed` sink for a reader that keeps up: it takes every entry at once (never
 * refuses, nothing unsent), handing entries, gaps and failures to `handlers`.
 */
export function keepingUpSink(handlers: {
  entry(entry: LogEntry): void;
  gap(gap: GapPayload): void;
  failed(error: unknown): void;
}): FeedSink {
  return {
    entry(entry) {
      handlers.entry(entry);
      return true;
    },
    gap: (gap) => handlers.gap(gap),
    failed: (error) => handlers.failed(error),
    unsentBytes: 0,
    drained: () => Promise.resolve(),
  };
}
