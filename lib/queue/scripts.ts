/**
 * Lua scripts of the Redis broker, one per concern. A job is one hash: its fields, its image (`img`, the
 * raw bytes; `image`, base64 text, where the transport cannot send bytes, and in jobs stored before), its
 * events (`e<seq>`, the notification JSON, and `i<seq>`, its event id; `lid`, the last event's id) and
 * the internal `entry` (the stream entry that runs it), so each step touches one key plus a stream. A job
 * hash gets an expiry only once the job ended.
 *
 * Event ids are not the sequence: each is `max(previous id + 1, now in ms)`. They increase within a job,
 * and a Redis that comes back without its last writes (a restart without fsync, a failover to a replica
 * that lagged) cannot hand out an id again for another event: the ids made after it are later in time
 * than every id it lost, so a client resuming from a lost id misses nothing and a `webhook-id` names one
 * event only, across reused job ids too. The sequence (`seq`) only numbers the hash's fields.
 */

import { PARK_LUA } from "../pace/lua.ts";
import { WEBHOOK_WAKE_MARK } from "./wake_scripts.ts";

/** Hash fields read back as a job record, in this order. */
export const RECORD_FIELDS = [
  "owner",
  "status",
  "prompt",
  "model",
  "aspect",
  "created",
  "updated",
  "attempts",
  "error",
  "mime",
  "revised",
  "seq",
  "wh",
  "whe",
  "uimg",
  "uticks",
  "n",
  "res",
  "qual",
  "nref",
  "count",
  "mimes",
  "ecode",
  "lid",
  "objs",
  "osz",
] as const;

/**
 * The fields of an edit's reference images (`ref0`…) in the job's references hash (a key of its own on
 * the job's tag, so that reading the job never carries them), deleted when the job ends.
 */
export const REFERENCE_FIELDS = ["ref0", "ref1", "ref2"] as const;

/** Lua `FIELDS`: the record fields, for HMGET. */
export const FIELDS_LUA = `local FIELDS = {${RECORD_FIELDS.map((f) => `'${f}'`).join(", ")}}`;

const TERMINAL_LUA = `local TERMINAL = {succeeded = true, failed = true, canceled = true}`;

/**
 * Lua `nextEventId(last, nowMs)`: the id of a job's next event, after its last one (`lid`, or `seq` in
 * hashes written before event ids were times), as text.
 */
export const EVENT_ID_LUA = `local function nextEventId(last, nowMs)
  local id = tonumber(nowMs)
  local prev = tonumber(last) or 0
  if id <= prev then id = prev + 1 end
  return string.format('%.0f', id)
end`;

/**
 * Lua `webhook(outbox, url, events, type, id, eventId, nowMs)`: adds a delivery to the partition's
 * outbox when the job has a webhook that asks for this event type (no events listed: the terminal ones).
 * A member is "<job id> <type> <event id> <event ms> <attempts>", scored by its due time.
 */
export const WEBHOOK_LUA = `local function webhook(outbox, url, events, etype, id, eventId, nowMs)
  if not url or url == '' then return end
  local wanted = events
  if not wanted or wanted == '' then wanted = 'succeeded failed canceled' end
  if not string.find(' ' .. wanted .. ' ', ' ' .. etype .. ' ', 1, true) then return end
  redis.call('ZADD', outbox, nowMs, id .. ' ' .. etype .. ' ' .. eventId .. ' ' .. nowMs .. ' 0')
  ${WEBHOOK_WAKE_MARK}
end`;

/** Lua `holds(stream, group, entry, consumer)`: true when the entry is pending and that consumer owns it. */
const HOLDS_LUA = `local function holds(stream, group, entry, consumer)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  return #p == 1 and p[1][2] == consumer
end`;

/**
 * Moves a queued job to running (appending `started`, remembering the entry that runs it) or counts a
 * takeover of the entry that runs it; a duplicate entry of a running job, or a delivery whose consumer
 * no longer holds its entry, gets nothing to run.
 */
export const START = `
-- KEYS[1] job hash, KEYS[2] feed stream, KEYS[3] jobs stream, KEYS[4] webhook outbox
-- ARGV[1] now (ISO), [2] started notification JSON, [3] oldest feed id to keep, [4] job id, [5] entry id,
-- ARGV[6] group, [7] consumer that must hold the entry ('' to skip the check), [8] now (ms)
-- Returns false when there is nothing to run (the lease is lost, no such job, it ended, or another
-- entry runs it), else the record fields after the change
${FIELDS_LUA}
${HOLDS_LUA}
${WEBHOOK_LUA}
${EVENT_ID_LUA}
if ARGV[7] ~= '' and not holds(KEYS[3], ARGV[6], ARGV[5], ARGV[7]) then return false end
local r = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local status = r[2]
if not status or (status ~= 'queued' and status ~= 'running') then return false end
if status == 'running' then
  local entry = redis.call('HGET', KEYS[1], 'entry')
  if entry and entry ~= '' and entry ~= ARGV[5] then return false end
end
local attempts = tonumber(r[8]) + 1
r[8] = tostring(attempts)
if status == 'queued' then
  local seq = tonumber(r[12]) + 1
  local prev = r[24] or r[12]
  local id = nextEventId(prev, ARGV[8])
  redis.call('HSET', KEYS[1], 'status', 'running', 'updated', ARGV[1], 'attempts', attempts,
    'seq', seq, 'e' .. seq, ARGV[2], 'i' .. seq, id, 'lid', id, 'entry', ARGV[5])
  redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'j', ARGV[4], 'e', id, 'p', prev,
    'n', ARGV[2], 'o', r[1])
  webhook(KEYS[4], r[13], r[14], 'started', ARGV[4], id, ARGV[8])
  r[2] = 'running'
  r[6] = ARGV[1]
  r[12] = tostring(seq)
  r[24] = id
else
  redis.call('HSET', KEYS[1], 'attempts', attempts, 'entry', ARGV[5])
end
return r
`;

/**
 * Ends a job once (compare-and-set on its status), appends the terminal event, acknowledges; writes
 * nothing when the delivery's consumer no longer holds the entry.
 */
export const FINISH = `
-- KEYS[1] job hash, KEYS[2] feed stream, KEYS[3] jobs stream, KEYS[4] dead-letter stream,
-- KEYS[5] webhook outbox, KEYS[6] the partition's waiting room, KEYS[7] the job's references hash,
-- KEYS[8] (optional) the Socket.IO notices outbox: a member like a webhook's, for the bridge
-- ARGV[1] entry id ('' for none), [2] group, [3] status, [4] notification JSON (image omitted),
-- ARGV[5] now (ISO), [6] ttl seconds, [7] oldest feed id to keep, [8] job id, [9] error, [10] mime type,
-- ARGV[11] revised prompt, [12] image ('' for none), [13] dead-letter reason ('' for none),
-- ARGV[14] only when the status is one of these (space-separated, '' for any),
-- ARGV[15] consumer that must hold the entry ('' to skip the check), [16] the image's field,
-- ARGV[17] now (ms), [18] images the provider made ('' none), [19] their cost in USD ticks,
-- [20] the most bytes one stored value may have (0: no cap; the images' Redis-side cap),
-- [21..] more field-value pairs to write (the images after the first, their count and media types,
-- an error code)
-- Fields left empty (error, mime, revised, image, usage) are not written; the references hash is
-- deleted.
-- Returns {seq of the new event, owner, created (ISO), images asked for ('' when not recorded)},
-- 0 when the job had already ended, -1 when it is gone, -2 when the lease is lost, -3 when an image
-- is over the cap (nothing written for any of these);
-- run again with the entry and status that ended the job, {seq, owner, created, asked, 1}: done,
-- nothing written again (the job hash's fin remembers "<entry> <status>")
${TERMINAL_LUA}
${HOLDS_LUA}
${WEBHOOK_LUA}
${EVENT_ID_LUA}
local f = redis.call('HMGET', KEYS[1], 'status', 'seq', 'owner', 'wh', 'whe', 'created', 'nimg',
  'fin', 'lid')
-- Run again after it ended the job (a resend after a reconnect or a failover): "done", once more.
-- Not for a dead letter: its end is reported by the call that wrote it, and only by that one.
if ARGV[1] ~= '' and ARGV[13] == '' and f[8] == ARGV[1] .. ' ' .. ARGV[3] then
  return {tonumber(f[2]), f[3], f[6] or '', f[7] or '', 1}
end
local cap = tonumber(ARGV[20])
if cap > 0 then
  if string.len(ARGV[12]) > cap then return -3 end
  for i = 22, #ARGV, 2 do
    if string.len(ARGV[i]) > cap then return -3 end
  end
end
if ARGV[1] ~= '' then
  if ARGV[15] ~= '' and not holds(KEYS[3], ARGV[2], ARGV[1], ARGV[15]) then return -2 end
  redis.call('XACK', KEYS[3], ARGV[2], ARGV[1])
  redis.call('XDEL', KEYS[3], ARGV[1])
end
if ARGV[13] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'Id', ARGV[8], 'reason', ARGV[13], 'at', ARGV[5])
end
if not f[1] then return -1 end
if TERMINAL[f[1]] then return 0 end
if ARGV[14] ~= '' and not string.find(' ' .. ARGV[14] .. ' ', ' ' .. f[1] .. ' ', 1, true) then
  return 0
end
local seq = tonumber(f[2]) + 1
local prev = f[9] or f[2]
local id = nextEventId(prev, ARGV[17])
local set = {'status', ARGV[3], 'updated', ARGV[5], 'seq', seq, 'e' .. seq, ARGV[4], 'i' .. seq, id,
  'lid', id}
if ARGV[1] ~= '' then
  set[#set + 1] = 'fin'
  set[#set + 1] = ARGV[1] .. ' ' .. ARGV[3]
end
for _, pair in ipairs({{'error', 9}, {'mime', 10}, {'revised', 11}, {ARGV[16], 12}, {'uimg', 18},
    {'uticks', 19}}) do
  if ARGV[pair[2]] ~= '' then
    set[#set + 1] = pair[1]
    set[#set + 1] = ARGV[pair[2]]
  end
end
for i = 21, #ARGV do set[#set + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('DEL', KEYS[7])
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[7], '*', 'j', ARGV[8], 'e', id, 'p', prev,
  'n', ARGV[4], 'o', f[3])
webhook(KEYS[5], f[4], f[5], ARGV[3], ARGV[8], id, ARGV[17])
if KEYS[8] then webhook(KEYS[8], 'bridge', '', ARGV[3], ARGV[8], id, ARGV[17]) end
redis.call('EXPIRE', KEYS[1], ARGV[6])
if f[1] == 'queued' then redis.call('ZREM', KEYS[6], ARGV[8] .. ' ' .. f[3]) end
return {seq, f[3], f[6] or '', f[7] or ''}
`;

/**
 * Puts a running job back to queued, scheduled at its due time, and acknowledges the delivery; writes
 * nothing when the delivery's consumer no longer holds the entry.
 */
export const RETRY = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] delayed sorted set, KEYS[4] waiting room,
-- KEYS[5] its clock
-- ARGV[1] entry id, [2] group, [3] due time (ms), [4] now (ISO), [5] job id,
-- ARGV[6] consumer that must hold the entry ('' to skip the check), [7] "1" to give the turn back
-- (the provider was busy: the attempt is not counted and the job waits at the front of its owner's
-- line, with no delay of its own)
-- Returns 1 when scheduled, 0 when the job is no longer running, -2 when the lease is lost
${HOLDS_LUA}
${PARK_LUA}
if ARGV[6] ~= '' and not holds(KEYS[2], ARGV[2], ARGV[1], ARGV[6]) then return -2 end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'attempts')
if f[1] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', ARGV[4])
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'attempts', math.max(0, (tonumber(f[3]) or 1) - 1))
  park(KEYS[4], KEYS[5], ARGV[5], f[2], true)
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
end
return 1
`;

/** Acknowledges and deletes an entry unless the delivery's consumer no longer holds it. */
export const ACK = `
-- KEYS[1] jobs stream
-- ARGV[1] entry id, [2] group, [3] consumer that must hold the entry ('' to skip the check)
-- Returns 1 when acknowledged, 0 when the lease is lost (nothing written)
${HOLDS_LUA}
if ARGV[3] ~= '' and not holds(KEYS[1], ARGV[2], ARGV[1], ARGV[3]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
`;

/** Renews the leases one consumer still holds and reads their jobs' statuses. */
export const RENEW = `
-- KEYS[1] jobs stream, KEYS[2..n+1] the job hashes of the deliveries, in order
-- ARGV[1] group, [2] consumer, [3..n+2] the deliveries' entry ids, in order
-- Returns per delivery: the job's status, 'lost' when the entry is not pending for this consumer
-- (taken over, or acknowledged), false when the job is gone
${HOLDS_LUA}
local out = {}
for i = 2, #KEYS do
  local entry = ARGV[i + 1]
  if entry ~= '' and holds(KEYS[1], ARGV[1], entry, ARGV[2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'JUSTID')
    out[i - 1] = redis.call('HGET', KEYS[i], 'status')
  else
    out[i - 1] = 'lost'
  end
end
return out
`;

/** Removes idle consumers with nothing pending, in one step (none can claim meanwhile). */
export const PRUNE = `
-- KEYS[1] jobs stream
-- ARGV[1] group, [2] least idle time (ms)
-- Returns how many consumers were removed
local removed = 0
for _, row in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local c = {}
  for i = 1, #row, 2 do c[row[i]] = row[i + 1] end
  if tonumber(c['pending']) == 0 and tonumber(c['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c['name'])
    removed = removed + 1
  end
end
return removed
`;

/**
 * Moves due delayed jobs, read by the caller, back onto the jobs stream; one that ended while it waited
 * is dropped, and one that another sweep moved (or that was scheduled again for later) is left alone.
 */
export const PROMOTE = `
-- KEYS[1] delayed sorted set, KEYS[2] waiting room, KEYS[3] its clock, KEYS[4..n+3] the due jobs'
-- hashes, in order
-- ARGV[1] now (ms), [2..n+1] the due jobs' ids, in order
-- Returns how many jobs moved (to the front of their owners' lines in the waiting room)
${TERMINAL_LUA}
${PARK_LUA}
local moved = 0
for i = 4, #KEYS do
  local id = ARGV[i - 2]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], id)
    local f = redis.call('HMGET', KEYS[i], 'status', 'owner')
    if f[1] and not TERMINAL[f[1]] then
      redis.call('HSET', KEYS[i], 'qe', '')
      park(KEYS[2], KEYS[3], id, f[2], true)
      moved = moved + 1
    end
  end
end
return moved
`;

/** Takes due members and hides them for a lease, in one step, so two processes never take one. */
export const TAKE_WEBHOOKS = `
-- KEYS[1] the partition's webhook outbox
-- ARGV[1] now (ms), [2] most members to take, [3] when they become due again if not done (ms)
-- Returns the members taken
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
`;

/** Replaces a member with its next attempt's, due at a later time (only if it is still pending). */
export const RETRY_WEBHOOK = `
-- KEYS[1] the partition's webhook outbox
-- ARGV[1] the member, [2] the member of the next attempt, [3] its due time (ms)
-- Returns 1 when rescheduled, 0 when the member was gone (done, or stopped)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
`;
