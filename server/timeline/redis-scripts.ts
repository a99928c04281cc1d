import type Redis from 'ioredis';
import type { Result } from 'ioredis';
import { serializeEvent, type LogEntry } from './bus';

/**
 * The Lua scripts behind `RedisBus`. Each write to a session runs as one script, so a
 * log append and its pub/sub fan-out (or a status change and its `done`) happen in one atomic
 * step: the Redis Stream id is the event id, and no reader can see one without the other.
 *
 * Session keys (one hash tag per session, so a cluster keeps them on one slot):
 * - `meta` hash: `status` (running | completed | failed | cancelled), `owner`, `seq` and `last`
 *   (seq and id of the newest event), `trimmed` (id of the newest event trimmed away by the
 *   cap), `lost` (when Redis lost a running session's log: the id of the owner's last event
 *   before the loss), `cancel` (a cancel was requested);
 * - `log` stream: one field per entry, `e` (an event's JSON without its id) or `d` (done's JSON);
 * - `lease` string: the owner, expiring after the run lease.
 */

/**
 * Claims a session never started. With `lost_until` (the id of the owner's last acknowledged
 * event), it re-creates a running session whose keys Redis lost, so the run can go on.
 */
const CLAIM = `
-- KEYS: meta, lease, log  ARGV: owner, lease_ms, ttl_s, lost_until ('' on a normal claim)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  -- New ids must follow the lost ones even if this Redis's clock is behind the old one's.
  redis.call('XADD', KEYS[3], ARGV[4], 'x', '')
  redis.call('XDEL', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'lost', ARGV[4]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * Appends an event, trims the log to the cap (remembering the newest trimmed id), publishes.
 * A resend of the last event (its reply was lost with the connection) returns the first id
 * instead of appending a duplicate: the owner publishes one seq at a time, in order.
 */
const PUBLISH = `
-- KEYS: meta, log  ARGV: channel, draft_json, max_events, ttl_s, seq
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq', 'last')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' then return 0 end
local seq = tonumber(ARGV[5])
if meta[2] and seq <= tonumber(meta[2]) then
  if seq == tonumber(meta[2]) then return meta[3] end
  return -2
end
local id = redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[1], 'seq', ARGV[5], 'last', id)
local excess = redis.call('XLEN', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', excess)
  redis.call('HSET', KEYS[1], 'trimmed', old[#old][1])
  redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], 'e' .. id .. ' ' .. ARGV[2])
return id
`;

/** Appends `done` and the final status, once: a session already finished answers 0. */
const SIGNAL_DONE = `
-- KEYS: meta, log, lease  ARGV: channel, done_json, status, ttl_s
local status = redis.call('HGET', KEYS[1], 'status')
if status == false then return -1 end
if status ~= 'running' then return 0 end
local id = redis.call('XADD', KEYS[2], '*', 'd', ARGV[2])
redis.call('HSET', KEYS[1], 'status', ARGV[3])
redis.call('DEL', KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], 'd' .. id .. ' ' .. ARGV[2])
return id
`;

/** The status, retention markers and entries after a position, in one consistent step. */
const READ = `
-- KEYS: meta, log  ARGV: range_start ('-' or '(<id>')
local meta = redis.call('HMGET', KEYS[1], 'status', 'trimmed', 'lost')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+')
return {meta[1], meta[2], meta[3], first[1] and first[1][1] or false, entries}
`;

/** Extends the owner's lease and the session's TTL; tells the owner of a pending cancel. */
const RENEW = `
-- KEYS: meta, lease, log  ARGV: owner, lease_ms, ttl_s
local meta = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' or meta[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
if meta[3] then return 2 end
return 1
`;

/**
 * Marks a running session cancelled-on-request and tells every instance. The mark is what
 * makes a cancel survive a lost pub/sub message: the owner sees it at its next renewal.
 */
const CANCEL = `
-- KEYS: meta  ARGV: control_channel, session_id
local status = redis.call('HGET', KEYS[1], 'status')
if status == false then return 'not_found' end
if status ~= 'running' then return 'finished' end
redis.call('HSET', KEYS[1], 'cancel', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'cancelling'
`;

/** A stream entry as XRANGE returns it: the id, then `[field, value]`. */
export type RawStreamEntry = [string, string[]];

export type RawRead = [string | null, string | null, string | null, string | null, RawStreamEntry[]];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    timelineClaim(meta: string, lease: string, log: string, owner: string, leaseMs: number, ttlS: number, lostUntil: string): Result<number, Context>;
    timelinePublish(meta: string, log: string, channel: string, draftJson: string, maxEvents: number, ttlS: number, seq: number): Result<string | number, Context>;
    timelineSignalDone(meta: string, log: string, lease: string, channel: string, doneJson: string, status: string, ttlS: number): Result<string | number, Context>;
    timelineRead(meta: string, log: string, rangeStart: string): Result<RawRead, Context>;
    timelineRenew(meta: string, lease: string, log: string, owner: string, leaseMs: number, ttlS: number): Result<number, Context>;
    timelineCancel(meta: string, controlChannel: string, sessionId: string): Result<string, Context>;
  }
}

/** Registers the scripts on a connection (ioredis runs them by EVALSHA, reloading after a restart). */
export function defineTimelineScripts(redis: Redis): void {
  redis.defineCommand('timelineClaim', { numberOfKeys: 3, lua: CLAIM });
  redis.defineCommand('timelinePublish', { numberOfKeys: 2, lua: PUBLISH });
  redis.defineCommand('timelineSignalDone', { numberOfKeys: 3, lua: SIGNAL_DONE });
  redis.defineCommand('timelineRead', { numberOfKeys: 2, lua: READ });
  redis.defineCommand('timelineRenew', { numberOfKeys: 3, lua: RENEW });
  redis.defineCommand('timelineCancel', { numberOfKeys: 1, lua: CANCEL });
}

/** A stored entry as `read` returns it: an event gets its id spliced into its JSON. */
export function fromStreamEntry([id, fields]: RawStreamEntry): LogEntry {
  return fields[0] === 'e'
    ? { id, kind: 'event', data: serializeEvent(id, fields[1]) }
    : { id, kind: 'done', data: fields[1] };
}

/**
 * Decodes a live message `<kind><id> <json>` (kind `e`: event draft, `d`: done) into the
 * entry every reader of the session shares; `null` when it is not one.
 */
export function decodeLiveEntry(message: string): LogEntry | null {
  const space = message.indexOf(' ');
  const kind = message[0];
  if (space < 2 || (kind !== 'e' && kind !== 'd')) return null;
  const id = message.slice(1, space);
  const json = message.slice(space + 1);
  return kind === 'e' ? { id, kind: 'event', data: serializeEvent(id, json) } : { id, kind: 'done', data: json };
}
