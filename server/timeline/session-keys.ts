/** Every Redis key and channel of one session (see redis-scripts.ts for what each holds). */
export interface SessionKeys {
  meta: string;
  log: string;
  lease: string;
  caller: string;
  /** Channel: the session's entries, to its readers. */
  live: string;
  /** Channel: cancel requests, to the run's owner. */
  control: string;
}

/**
 * The keys and channels of a session: `<prefix>{<session id>}:<name>`. The session id is the
 * hash tag, so on a Redis Cluster they all hash to one slot: every script of a session runs on
 * one node, and its sharded pub/sub stays on that node's shard.
 */
export function sessionKeys(prefix: string, sessionId: string): SessionKeys {
  const base = `${prefix}{${sessionId}}`;
  return {
    meta: `${base}:meta`,
    log: `${base}:log`,
    lease: `${base}:lease`,
    caller: `${base}:caller`,
    live: `${base}:live`,
    control: `${base}:control`,
  };
}
