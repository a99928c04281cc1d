/** Messages between the bench runner and its load client (a child process, over IPC). */

export interface RunSpec {
  sessionId: string;
  events: number;
  intervalMs: number;
  payloadBytes: number;
}

export type ToClient =
  /** Opens `GET <base>/timeline/stream/<id>` for each session and waits for its `ready`. */
  | { type: 'open'; base: string; sessionIds: string[]; concurrency: number; timeoutMs: number }
  /**
   * Opens a stream of each session (a session may be listed many times), waits for its
   * `ready`, then stops reading it for good: a stalled reader. Answered with `opened`.
   */
  | { type: 'stall'; base: string; sessionIds: string[]; concurrency: number; timeoutMs: number }
  | { type: 'run'; postBase: string; runs: RunSpec[]; timeoutMs: number }
  | { type: 'close' };

/** What one `run` measured, from the client's side. */
export interface RunMeasurement {
  sessions: number;
  completeSessions: number;
  /** AGENT_MESSAGEs expected but not received, over all sessions. */
  missing: number;
  /** AGENT_MESSAGEs received twice or out of order. */
  duplicates: number;
  /** Timeline events received (all types, not `done`). */
  events: number;
  postFailures: number;
  /** Milliseconds, first POST sent to last `done` received. */
  elapsedMs: number;
  /** Per-AGENT_MESSAGE latency, `details.sent_mono_ms` to receipt, ms. */
  latencyMs: number[];
  /** Per session, POST sent to first timeline event, ms. */
  ttfeMs: number[];
  timedOut: boolean;
  /** First problems seen, for the report. */
  errors: string[];
}

export type FromClient =
  | { type: 'opened'; failed: number; errors: string[] }
  | { type: 'result'; measurement: RunMeasurement }
  | { type: 'closed' }
  | { type: 'error'; message: string };
