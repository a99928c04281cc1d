import type { Cluster, Result } from 'ioredis';
import type Redis from 'ioredis';
import { serializeEvent, type LogEntry } from './bus';

/**
 * The Lua scripts behind `RedisBus`. Each write to a session runs as one script, so a
 * log append and its pub/sub fan-out (or a status change and its `done`) happen in one atomic
 * step: the Redis Stream id is the event id, and no reader can see one without the other.
 *
 * Every key and channel a script touches belongs to one session and carries its id as the
 * hash tag (`timeline:{<id>}:…`), so on a Redis Cluster a script runs on the one node serving
 * that session's slot. The channels are passed as keys too, for the same reason. The
 * deployment-wide index of running runs is spread over bucket keys of their own slots (see
 * run-index.ts) and is never touched here.
 *
 * Session keys:
 * - `meta` hash: `status` (running | completed | failed | cancelled), `owner`, `seq` and `last`
 *   (seq and id of the newest event), `trimmed` (id of the newest event trimmed away by the
 *   cap), `lost` (when Redis lost events of a running session: the id of the owner's last
 *   event before the loss), `cancel` (a cancel was requested), `suspect` (when a sweep first
 *   saw the lease missing);
 * - `log` stream: an event is `e` (its JSON without its id) then `s` (its seq); `done` is `d`
 *   (its JSON);
 * - `lease` string: the owner, expiring after the run lease;
 * - `caller` string: who the session belongs to (auth).
 * Session channels: `live` (its entries, to readers), `control` (cancel requests, to the owner).
 */

/** How a script publishes: plain pub/sub, or sharded pub/sub on a Redis Cluster. */
export type PublishCommand = 'PUBLISH' | 'SPUBLISH';

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

/** Stream ids compared as the text of two unsigned 64-bit numbers (Lua numbers are doubles). */
const ID_BEFORE = `
local function part_before(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_before(a, b)
  local am, an = string.match(a, '^(%d+)-(%d+)$')
  local bm, bn = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return part_before(am, bm) end
  return part_before(an, bn)
end
`;

/**
 * Appends an event draft as the next log entry, trims to the cap, publishes; returns its id.
 * The live message is `e<id> <seq> <draft_json>`: readers get the seq without parsing JSON.
 */
const appendEvent = (pub: PublishCommand) => `
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
  redis.call('${pub}', channel, 'e' .. id .. ' ' .. seq .. ' ' .. draft_json)
  return id
end
`;

/** Appends `done`, sets the final status, drops the lease; returns done's id. */
const finish = (pub: PublishCommand) => `
local function finish(meta, log, lease, channel, done_json, status, ttl_s)
  local id = redis.call('XADD', log, '*', 'd', done_json)
  redis.call('HSET', meta, 'status', status)
  redis.call('DEL', lease)
  redis.call('EXPIRE', meta, ttl_s)
  redis.call('EXPIRE', log, ttl_s)
  redis.call('${pub}', channel, 'd' .. id .. ' ' .. done_json)
  return id
end
`;

/**
 * Claims a session never started; with `first_json`, also appends and publishes its first
 * event in the same step (answering its id), so a run's first event costs no extra round trip.
 */
const claim = (pub: PublishCommand) => `${appendEvent(pub)}
-- KEYS: meta, lease, log, live
-- ARGV: owner, lease_ms, ttl_s, first_json ('' for none), max_events, caller (whose session it is; '' for none)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'caller', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then return append_event(KEYS[1], KEYS[3], KEYS[4], ARGV[4], '1', ARGV[5], ARGV[3]) end
return 1
`;

/**
 * Redis lost events of a running session this owner holds: all of its keys (a restart without
 * persistence) or the newest writes (a failover to a replica that had not received them yet).
 * Re-creates what is needed for the run to go on, marked with `lost_until` (the id of the
 * owner's last acknowledged event) and its seq, so new ids follow the lost ones and a reader
 * that had not seen them hears of the gap; and tells the live readers to read again, so one
 * that missed what was lost hears of it even if it already re-read after its reconnect.
 * Answers 1, or 0 when the session is no longer this owner's running run (finished meanwhile).
 */
const restore = (pub: PublishCommand) => `${ID_BEFORE}
-- KEYS: meta, lease, log, live
-- ARGV: owner, lease_ms, ttl_s, lost_until ('' when no event was acknowledged), lost_seq, caller ('' for none)
local meta = redis.call('HMGET', KEYS[1], 'status', 'owner', 'seq', 'lost')
if meta[1] and (meta[1] ~= 'running' or meta[2] ~= ARGV[1]) then return 0 end
if ARGV[4] ~= '' then
  -- New ids must follow the lost ones, even on a node whose clock is behind the old one's.
  if redis.pcall('XADD', KEYS[3], ARGV[4], 'x', '') == ARGV[4] then redis.call('XDEL', KEYS[3], ARGV[4]) end
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  if meta[4] == false or id_before(meta[4], ARGV[4]) then redis.call('HSET', KEYS[1], 'lost', ARGV[4]) end
  if (tonumber(meta[3]) or 0) < tonumber(ARGV[5]) then redis.call('HSET', KEYS[1], 'seq', ARGV[5], 'last', ARGV[4]) end
end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'caller', ARGV[6]) end
redis.call('HDEL', KEYS[1], 'suspect')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('${pub}', KEYS[4], '${RESTORED_MESSAGE}')
return 1
`;

/**
 * Appends an event, trims the log to the cap (remembering the newest trimmed id), publishes.
 * A resend of the last event (its reply was lost with the connection) returns the first id
 * instead of appending a duplicate: the owner publishes one seq at a time, in order. A seq
 * beyond the next one means the log lost the owner's latest events (-3: restore, then retry).
 */
const publish = (pub: PublishCommand) => `${appendEvent(pub)}
-- KEYS: meta, log, live  ARGV: draft_json, max_events, ttl_s, seq
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq', 'last')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' then return 0 end
local seq = tonumber(ARGV[4])
local last = tonumber(meta[2]) or 0
if seq <= last then
  if seq == last then return meta[3] end
  return -2
end
if seq > last + 1 then return -3 end
return append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[4], ARGV[2], ARGV[3])
`;

/**
 * Appends `done` and the final status, once: a session already finished answers 0. The
 * owner's last seq tells whether the log lost its latest events first (-3: restore, retry).
 */
const signalDone = (pub: PublishCommand) => `${finish(pub)}
-- KEYS: meta, log, lease, live  ARGV: done_json, status, ttl_s, last_seq (0: unknown)
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' then return 0 end
if (tonumber(meta[2]) or 0) < tonumber(ARGV[4]) then return -3 end
return finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
`;

/**
 * The status, retention markers and entries after a position, in one consistent step: at most
 * `limit` entries (one more is fetched to tell whether more remain), or all with limit 0.
 * When events were lost after the position (`lost`), a limited read first returns what the
 * reader lacks from before the loss, so the gap is reported where it is, on the next page;
 * `first` is then the first entry after the loss.
 */
const READ = `${ID_BEFORE}
-- KEYS: meta, log  ARGV: after ('' for the start), limit (0: no limit)
local meta = redis.call('HMGET', KEYS[1], 'status', 'trimmed', 'lost')
local limit = tonumber(ARGV[2])
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local function range(from, to)
  if limit == 0 then return redis.call('XRANGE', KEYS[2], from, to), 0 end
  local entries = redis.call('XRANGE', KEYS[2], from, to, 'COUNT', limit + 1)
  if #entries > limit then
    entries[#entries] = nil
    return entries, 1
  end
  return entries, 0
end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local lost = meta[3]
if lost and (ARGV[1] == '' or id_before(ARGV[1], lost)) then
  if limit > 0 then
    local head = range(start, lost)
    if #head > 0 then return {meta[1], meta[2], false, first[1] and first[1][1] or false, head, 1} end
  end
  first = redis.call('XRANGE', KEYS[2], '(' .. lost, '+', 'COUNT', 1)
end
local entries, more = range(start, '+')
return {meta[1], meta[2], lost or false, first[1] and first[1][1] or false, entries, more}
`;

/**
 * Extends the owner's lease and the session's TTL, clearing a sweeper's `suspect` mark; tells
 * the owner of a pending cancel.
 */
const RENEW = `
-- KEYS: meta, lease, log  ARGV: owner, lease_ms, ttl_s
local meta = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel', 'suspect')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' or meta[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if meta[4] then redis.call('HDEL', KEYS[1], 'suspect') end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
if meta[3] then return 2 end
return 1
`;

/**
 * Marks a running session cancelled-on-request and tells its owner on the session's control
 * channel. The mark is what makes a cancel survive a lost pub/sub message: the owner sees it
 * at its next renewal.
 */
const cancel = (pub: PublishCommand) => `
-- KEYS: meta, control
local status = redis.call('HGET', KEYS[1], 'status')
if status == false then return 'not_found' end
if status ~= 'running' then return 'finished' end
redis.call('HSET', KEYS[1], 'cancel', '1')
redis.call('${pub}', KEYS[2], '1')
return 'cancelling'
`;

/**
 * Ends a run whose owner stopped renewing its lease: appends `WORKFLOW_ERROR` with the seq
 * after the owner's last event, then `done`, in one step, so of several instances sweeping at
 * once exactly one ends it. A lease seen missing is first only marked (`suspect`, by this
 * node's clock); the run ends at a sweep `grace_ms` or more later if the lease is still
 * missing. A failover or a stall can delay the renewals of a live owner past its lease; the
 * owner's renewal, landing as soon as Redis is back, clears the mark. Answers done's id; 0 when
 * the run is finished, -1 when the session is gone (the index entry can go either way); 2 when
 * its lease is alive, 3 when it was marked or is not missing for long enough (the entry stays).
 */
const endLostRun = (pub: PublishCommand) => `${NOW_MS}${appendEvent(pub)}${finish(pub)}
-- KEYS: meta, log, lease, live
-- ARGV: session_id_json, step_json (the event's fields after seq), done_json, ttl_s, max_events, grace_ms
local meta = redis.call('HMGET', KEYS[1], 'status', 'seq', 'suspect')
if meta[1] == false then return -1 end
if meta[1] ~= 'running' then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if meta[3] == false then
  redis.call('HSET', KEYS[1], 'suspect', now_ms())
  return 3
end
if now_ms() - tonumber(meta[3]) < tonumber(ARGV[6]) then return 3 end
local seq = (tonumber(meta[2]) or 0) + 1
local draft = '{"session_id":' .. ARGV[1] .. ',"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2)
append_event(KEYS[1], KEYS[2], KEYS[4], draft, seq, ARGV[5], ARGV[4])
return finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3], 'failed', ARGV[4])
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

/**
 * Adds a run to an index bucket, due when its lease ends by this node's clock; moves an entry
 * already there unless `only_new` is '1' (a claim: a competing claim that loses must not push
 * back the due time of the run that holds the session).
 */
const INDEX_ADD = `${NOW_MS}
-- KEYS: bucket  ARGV: lease_ms, session_id, only_new ('1' or '0')
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], 'NX', now_ms() + tonumber(ARGV[1]), ARGV[2])
else
  redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[1]), ARGV[2])
end
return 1
`;

/** Index entries whose lease ended by this node's clock: `[id, due, id, due, ...]`, at most `limit`. */
const INDEX_DUE = `${NOW_MS}
-- KEYS: bucket  ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'WITHSCORES', 'LIMIT', 0, ARGV[1])
`;

/** Drops an index entry unless it was added again since it was read (its due time moved). */
const INDEX_DROP = `
-- KEYS: bucket  ARGV: session_id, due
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`;

/** A stream entry as XRANGE returns it: the id, then `[field, value]`. */
export type RawStreamEntry = [string, string[]];

export type RawRead = [string | null, string | null, string | null, string | null, RawStreamEntry[], number];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    timelineClaim(meta: string, lease: string, log: string, live: string, owner: string, leaseMs: number, ttlS: number, firstJson: string, maxEvents: number, caller: string): Result<string | number, Context>;
    timelineRestore(meta: string, lease: string, log: string, live: string, owner: string, leaseMs: number, ttlS: number, lostUntil: string, lostSeq: number, caller: string): Result<number, Context>;
    timelinePublish(meta: string, log: string, live: string, draftJson: string, maxEvents: number, ttlS: number, seq: number): Result<string | number, Context>;
    timelineSignalDone(meta: string, log: string, lease: string, live: string, doneJson: string, status: string, ttlS: number, lastSeq: number): Result<string | number, Context>;
    timelineRead(meta: string, log: string, after: string, limit: number): Result<RawRead, Context>;
    timelineRenew(meta: string, lease: string, log: string, owner: string, leaseMs: number, ttlS: number): Result<number, Context>;
    timelineCancel(meta: string, control: string): Result<string, Context>;
    timelineBindCaller(caller: string, meta: string, callerId: string, ttlS: number): Result<number, Context>;
    timelineEndLostRun(meta: string, log: string, lease: string, live: string, sessionIdJson: string, stepJson: string, doneJson: string, ttlS: number, maxEvents: number, graceMs: number): Result<string | number, Context>;
    timelineIndexAdd(bucket: string, leaseMs: number, sessionId: string, onlyNew: '0' | '1'): Result<number, Context>;
    timelineIndexDue(bucket: string, limit: number): Result<string[], Context>;
    timelineIndexDrop(bucket: string, sessionId: string, due: string): Result<number, Context>;
  }
}

/**
 * Registers the scripts on a connection or cluster client (ioredis runs them by EVALSHA,
 * loading them again on a node that lost them). `pub` is how they publish.
 */
export function defineTimelineScripts(redis: Redis | Cluster, pub: PublishCommand): void {
  redis.defineCommand('timelineClaim', { numberOfKeys: 4, lua: claim(pub) });
  redis.defineCommand('timelineRestore', { numberOfKeys: 4, lua: restore(pub) });
  redis.defineCommand('timelinePublish', { numberOfKeys: 3, lua: publish(pub) });
  redis.defineCommand('timelineSignalDone', { numberOfKeys: 4, lua: signalDone(pub) });
  redis.defineCommand('timelineRead', { numberOfKeys: 2, lua: READ });
  redis.defineCommand('timelineRenew', { numberOfKeys: 3, lua: RENEW });
  redis.defineCommand('timelineCancel', { numberOfKeys: 2, lua: cancel(pub) });
  redis.defineCommand('timelineEndLostRun', { numberOfKeys: 4, lua: endLostRun(pub) });
  redis.defineCommand('timelineBindCaller', { numberOfKeys: 2, lua: BIND_CALLER });
  redis.defineCommand('timelineIndexAdd', { numberOfKeys: 1, lua: INDEX_ADD });
  redis.defineCommand('timelineIndexDue', { numberOfKeys: 1, lua: INDEX_DUE });
  redis.defineCommand('timelineIndexDrop', { numberOfKeys: 1, lua: INDEX_DROP });
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
