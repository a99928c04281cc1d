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
 * - `log` stream: an event is `e` (its JSON without its id) then `s` (its seq); `done` is `d`
 *   (its JSON);
 * - `lease` string: the owner, expiring after the run lease.
 *
 * One deployment-wide key, `running` (a sorted set under the key prefix): the running sessions,
 * scored by when their lease expires (Redis clock, ms). Claim, renew, done and the run-lost
 * sweep keep it in step with the sessions in the same scripts; it is an index for the sweep,
 * the `lease` key stays the authority. (It spans sessions, so these scripts need one Redis,
 * not a cluster.)
 */

/** The live message that tells a session's readers its log was re-created after a loss. */
const RESTORED_MESSAGE = 'r';

/** What a live reader receives instead of an entry when it must read the log again. */
export const LOG_RESTORED = Symbol('log restored');

/** Lua helpers shared by the scripts below (prepended to each one that uses them). */
const NOW_MS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/**
 * Appends an event draft as the next log entry, trims to the cap, publishes; returns its id.
 * The live message is `e<id> <seq> <draft_json>`: readers get the seq without parsing JSON.
 */
const APPEND_EVENT = `
local function append_event(meta, log, channel, draft_json, seq, max_events, ttl_s)
  local id = redis.call('XADD', log, '*', 'e', draft_json, 's', seq)
  redis.call('HSET', meta, 'seq', seq, 'last', id)
  -- The log holds at most one entry per seq, so it can only pass the cap once seq does.
  if tonumber(seq) > tonumber(max_events) then
    local excess = redis.call('XLEN', log) - tonumber(max_events)
    if excess > 0 then
      local old = redis.call('XRANGE', log, '-', '+', 'COUNT', excess)
      redis.call('HSET', meta, 'trimmed', old[#old][1])
      redis.call('XTRIM', log, 'MAXLEN', max_events)
    end
  end
  -- The first append creates the log; after that the owner's lease renewals (every third of
  -- RUN_LEASE_MS) and the final done refresh both TTLs, so a publish need not.
  if tonumber(seq) == 1 then
    redis.call('EXPIRE', meta, ttl_s)
    redis.call('EXPIRE', log, ttl_s)
  end
  redis.call('PUBLISH', channel, 'e' .. id .. ' ' .. seq .. ' ' .. draft_json)
  return id
end
`;

/** Appends `done`, sets the final status, drops the lease and the running-set entry; returns done's id. */
const FINISH = `
local function finish(meta, log, lease, running, session_id, channel, done_json, status, ttl_s)
  local id = redis.call('XADD', log, '*', 'd', done_json)
  redis.call('HSET', meta, 'status', status)
  redis.call('DEL', lease)
  redis.call('ZREM', running, session_id)
  redis.call('EXPIRE', meta, ttl_s)
  redis.call('EXPIRE', log, ttl_s)
  redis.call('PUBLISH', channel, 'd' .. id .. ' ' .. done_json)
  return id
end
`;

/**
 * Claims a session never started; with `first_json`, also appends and publishes its first
 * event in the same step (answering its id), so a run's first event costs no extra round trip.
 * With `lost_until` (the id of the owner's last acknowledged event) and `lost_seq` (its seq),
 * it re-creates a running session whose keys Redis lost, so the run can go on and a run-lost
 * sweep still numbers its event after the owner's; and it tells the session's live readers to
 * read again, so one that missed what was lost hears of the gap even if it already re-read the
 * empty log after its reconnect.
 */
const CLAIM = `${NOW_MS}${APPEND_EVENT}
-- KEYS: meta, lease, log, running
-- ARGV: owner, lease_ms, ttl_s, lost_until ('' on a normal claim), session_id, lost_seq, channel,
--       first_json (the first event's draft, appended as seq 1; '' for none), max_events,
--       caller (whose session it is, kept with the run; '' for none)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  -- New ids must follow the lost ones even if this Redis's clock is behind the old one's.
  redis.call('XADD', KEYS[3], ARGV[4], 'x', '')
  redis.call('XDEL', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'caller', ARGV[10]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'lost', ARGV[4], 'seq', ARGV[6], 'last', ARGV[4]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[2]), ARGV[5])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[7], '${RESTORED_MESSAGE}') end
if ARGV[8] ~= '' then return append_event(KEYS[1], KEYS[3], ARGV[7], ARGV[8], '1', ARGV[9], ARGV[3]) end
return 1
`;

/**
 * Appends an event, trims the log to the cap (remembering the newest trimmed id), publishes.
 * A resend of the last event (its reply was lost with the connection) returns the first id
 * instead of appending a duplicate: the owner publishes one seq at a time, in order.
 */
const PUBLISH = `${APPEND_EVENT}
-- KEYS: meta, log  ARGV: channel, draft_json, max_events, ttl_s, seq
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq', 'last')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' then return 0 end
local seq = tonumber(ARGV[5])
if meta[2] and seq <= tonumber(meta[2]) then
  if seq == tonumber(meta[2]) then return meta[3] end
  return -2
end
return append_event(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[5], ARGV[3], ARGV[4])
`;

/** Appends `done` and the final status, once: a session already finished answers 0. */
const SIGNAL_DONE = `${FINISH}
-- KEYS: meta, log, lease, running  ARGV: channel, done_json, status, ttl_s, session_id
local status = redis.call('HGET', KEYS[1], 'status')
if status == false then return -1 end
if status ~= 'running' then return 0 end
return finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`;

/**
 * The status, retention markers and entries after a position, in one consistent step: at most
 * `limit` entries (one more is fetched to tell whether more remain), or all with limit 0.
 */
const READ = `
-- KEYS: meta, log  ARGV: range_start ('-' or '(<id>'), limit (0: no limit)
local meta = redis.call('HMGET', KEYS[1], 'status', 'trimmed', 'lost')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local limit = tonumber(ARGV[2])
local entries
local more = 0
if limit > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', limit + 1)
  if #entries > limit then
    entries[#entries] = nil
    more = 1
  end
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+')
end
return {meta[1], meta[2], meta[3], first[1] and first[1][1] or false, entries, more}
`;

/** Extends the owner's lease and the session's TTL; tells the owner of a pending cancel. */
const RENEW = `${NOW_MS}
-- KEYS: meta, lease, log, running  ARGV: owner, lease_ms, ttl_s, session_id
local meta = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' or meta[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[2]), ARGV[4])
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

/** Running sessions whose lease expired by the Redis clock, at most `limit` of them. */
const EXPIRED_RUNS = `${NOW_MS}
-- KEYS: running  ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, ARGV[1])
`;

/**
 * Ends a run whose owner stopped renewing its lease: appends `WORKFLOW_ERROR` with the seq
 * after the owner's last event, then `done`, in one step, so of several instances sweeping at
 * once exactly one ends it. Answers done's id; 0 when the run is not lost (finished, or its
 * lease is alive), -1 when the session is gone (its entry in `running` is dropped either way).
 */
const END_LOST_RUN = `${APPEND_EVENT}${FINISH}
-- KEYS: meta, log, lease, running
-- ARGV: channel, session_id, session_id_json, step_json (the event's fields after seq), done_json, ttl_s, max_events
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq')
if meta[1] == false then
  redis.call('ZREM', KEYS[4], ARGV[2])
  return -1
end
if meta[1] ~= 'running' then
  redis.call('ZREM', KEYS[4], ARGV[2])
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local seq = (tonumber(meta[2]) or 0) + 1
local draft = '{"session_id":' .. ARGV[3] .. ',"seq":' .. seq .. ',' .. string.sub(ARGV[4], 2)
append_event(KEYS[1], KEYS[2], ARGV[1], draft, seq, ARGV[7], ARGV[6])
return finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[1], ARGV[5], 'failed', ARGV[6])
`;

/**
 * Answers whether a session is `caller`'s. A run claimed with a caller keeps it in `meta`
 * (so it lives as long as the log); before that, the session is bound to its first caller by
 * the `caller` key, next to the session's other keys. Each touch by that caller keeps the key
 * `ttl_s` more, and no shorter than the session's `meta` then lives.
 */
const BIND_CALLER = `
-- KEYS: caller, meta  ARGV: caller, ttl_s
local owner = redis.call('HGET', KEYS[2], 'caller')
if owner then
  if owner == ARGV[1] then return 1 end
  return 0
end
local bound = redis.call('GET', KEYS[1])
if bound and bound ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[2])
local kept = redis.call('TTL', KEYS[2])
if kept > ttl then ttl = kept end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
return 1
`;

/** A stream entry as XRANGE returns it: the id, then `[field, value]`. */
export type RawStreamEntry = [string, string[]];

export type RawRead = [string | null, string | null, string | null, string | null, RawStreamEntry[], number];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    timelineClaim(meta: string, lease: string, log: string, running: string, owner: string, leaseMs: number, ttlS: number, lostUntil: string, sessionId: string, lostSeq: number, channel: string, firstJson: string, maxEvents: number, caller: string): Result<string | number, Context>;
    timelinePublish(meta: string, log: string, channel: string, draftJson: string, maxEvents: number, ttlS: number, seq: number): Result<string | number, Context>;
    timelineSignalDone(meta: string, log: string, lease: string, running: string, channel: string, doneJson: string, status: string, ttlS: number, sessionId: string): Result<string | number, Context>;
    timelineRead(meta: string, log: string, rangeStart: string, limit: number): Result<RawRead, Context>;
    timelineRenew(meta: string, lease: string, log: string, running: string, owner: string, leaseMs: number, ttlS: number, sessionId: string): Result<number, Context>;
    timelineCancel(meta: string, controlChannel: string, sessionId: string): Result<string, Context>;
    timelineExpiredRuns(running: string, limit: number): Result<string[], Context>;
    timelineBindCaller(caller: string, meta: string, callerId: string, ttlS: number): Result<number, Context>;
    timelineEndLostRun(meta: string, log: string, lease: string, running: string, channel: string, sessionId: string, sessionIdJson: string, stepJson: string, doneJson: string, ttlS: number, maxEvents: number): Result<string | number, Context>;
  }
}

/** Registers the scripts on a connection (ioredis runs them by EVALSHA, reloading after a restart). */
export function defineTimelineScripts(redis: Redis): void {
  redis.defineCommand('timelineClaim', { numberOfKeys: 4, lua: CLAIM });
  redis.defineCommand('timelinePublish', { numberOfKeys: 2, lua: PUBLISH });
  redis.defineCommand('timelineSignalDone', { numberOfKeys: 4, lua: SIGNAL_DONE });
  redis.defineCommand('timelineRead', { numberOfKeys: 2, lua: READ });
  redis.defineCommand('timelineRenew', { numberOfKeys: 4, lua: RENEW });
  redis.defineCommand('timelineCancel', { numberOfKeys: 1, lua: CANCEL });
  redis.defineCommand('timelineExpiredRuns', { numberOfKeys: 1, lua: EXPIRED_RUNS });
  redis.defineCommand('timelineEndLostRun', { numberOfKeys: 4, lua: END_LOST_RUN });
  redis.defineCommand('timelineBindCaller', { numberOfKeys: 2, lua: BIND_CALLER });
}

/** A stored entry as `read` returns it: an event gets its id spliced into its JSON. */
export function fromStreamEntry([id, fields]: RawStreamEntry): LogEntry {
  return fields[0] === 'e'
    ? { id, kind: 'event', data: serializeEvent(id, fields[1]), seq: Number(fields[3]) }
    : { id, kind: 'done', data: fields[1] };
}

/**
 * Decodes a live message (`e<id> <seq> <draft json>` for an event, `d<id> <json>` for done)
 * into the entry every reader of the session shares, or `LOG_RESTORED`; `null` when it is
 * neither.
 */
export function decodeLiveEntry(message: string): LogEntry | typeof LOG_RESTORED | null {
  if (message === RESTORED_MESSAGE) return LOG_RESTORED;
  const space = message.indexOf(' ');
  const kind = message[0];
  if (space < 2 || (kind !== 'e' && kind !== 'd')) return null;
  const id = message.slice(1, space);
  if (kind === 'd') return { id, kind: 'done', data: message.slice(space + 1) };
  const seqEnd = message.indexOf(' ', space + 1);
  if (seqEnd < 0) return null;
  const seq = Number(message.slice(space + 1, seqEnd));
  return { id, kind: 'event', data: serializeEvent(id, message.slice(seqEnd + 1)), seq };
}
