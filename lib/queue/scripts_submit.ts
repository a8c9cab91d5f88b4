/**
 * Lua scripts of the Redis broker's submits: create-if-absent with the limits (CREATE), and with
 * N > 1 the owner's own step (OWNER) and its undo (RELEASE). See scripts.ts for the job hash's layout.
 */
import { ENQUEUE_LUA, PACE_LUA, PARK_LUA } from "../pace/lua.ts";
import { FIELDS_LUA, WEBHOOK_LUA } from "./scripts.ts";

/** The most ids an owner's job index keeps (the oldest beyond it leave the listing first). */
export const INDEX_MAX = 100_000;

/**
 * Lua `reserve(day, quota, images)`: reserves `images` of the owner's day (its hash `day`) against
 * `quota`; false when they would exceed it. Images made count too, should the cap have been set after
 * some were made today.
 */
const RESERVE_LUA = `local function reserve(day, quota, images)
  local seen = redis.call('HMGET', day, 'reserved', 'images')
  if math.max(tonumber(seen[1] or '0'), tonumber(seen[2] or '0')) + images > quota then
    return false
  end
  redis.call('HINCRBY', day, 'reserved', images)
  redis.call('EXPIRE', day, 35 * 86400)
  return true
end`;

/**
 * Creates a job unless its id exists or a limit refuses it; with ARGV[9] = "1" also enqueues it. With
 * one partition it also checks the owner's limits (KEYS[3], KEYS[4]); with more, OWNER does that first.
 */
export const CREATE = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] feed stream, KEYS[4] webhook outbox, KEYS[5] the
-- partition's waiting room, KEYS[6] its clock hash, KEYS[7] its pace hash, and with one partition:
-- KEYS[8] the owner's job index, KEYS[9] the owner's set of active job ids, KEYS[10] the owner's
-- submission counter for the current one-minute window, KEYS[11] the owner's usage of today
-- ARGV[1] id, [2] owner, [3] prompt, [4] model, [5] aspect ratio, [6] now (ISO), [7] ttl seconds of the active set,
-- ARGV[8] queued notification JSON, [9] "1" to enqueue, [10] max active jobs per owner (0: none),
-- ARGV[11] max jobs queued (0: none), [12] "1" on the second pass (the rate was counted, ids of
-- ended jobs follow), [13] submissions per owner per minute (0: none), [14] oldest feed id to keep,
-- [15] now (ms), [16] webhook URL ('' none), [17] webhook event types (space-separated, '' default),
-- [18] ttl seconds of the owner's job index ('0': leave its expiry as it is), [19] "1" when the id
-- was made by the server (a hint, unused: every id is checked), [20] the partition's pace cap (see TURN), [21] the jobs stream's group,
-- [22] images per owner per day (0: none), [23] images this job asks for, [24] seconds until the
-- day ends, [25] the owner's index drops ids older than this (ms) when its expiry is renewed,
-- [26] k, the number of more field-value pairs of the job hash (n, resolution, quality, the
-- references' count), [27..26+2k] those pairs, [27+2k] r, the number of reference images,
-- [28+2k..27+2k+r] the references, [28+2k+r..] ids to drop from the set
-- With r > 0 the last key, after those above, is the job's references hash (written as ref0…).
-- The job hash gets no expiry: it lives until the job ends (finish, cancel or dead letter set one).
-- Returns {1, wait} when created (wait: ms until the pace has a turn when the job was parked in an
-- empty waiting room, else -1), {0, <record fields>} of the job that already has this id,
-- {-1} when the owner has too many active jobs, {-2} when the queue is full,
-- {-3, seconds to wait} when the owner is over the rate limit, {-4, <active ids>} when the owner is
-- at the cap on the first pass (the caller reads those jobs and calls again with the ended ones),
-- {-5, seconds to wait} when the owner's images of the day are used up
${FIELDS_LUA}
${WEBHOOK_LUA}
${PACE_LUA}
${PARK_LUA}
${ENQUEUE_LUA}
${RESERVE_LUA}
-- Every id is checked, a server-made one too: a CREATE run twice (a client library resending it
-- after a reconnect) answers the job it made the first time instead of resetting it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HMGET', KEYS[1], unpack(FIELDS))}
end
local k = tonumber(ARGV[26])
local r = tonumber(ARGV[27 + 2 * k])
local nkeys = #KEYS
if r > 0 then nkeys = nkeys - 1 end
local owned = nkeys >= 10
local rate = tonumber(ARGV[13])
if owned and rate > 0 and ARGV[12] ~= '1' then
  local count = redis.call('INCR', KEYS[10])
  if count == 1 then redis.call('EXPIRE', KEYS[10], 60) end
  if count > rate then return {-3, redis.call('TTL', KEYS[10])} end
end
local maxQueued = tonumber(ARGV[11])
if ARGV[9] == '1' and maxQueued > 0 and
    redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[5]) >= maxQueued then
  return {-2}
end
local maxActive = tonumber(ARGV[10])
if owned and maxActive > 0 then
  for i = 28 + 2 * k + r, #ARGV do redis.call('SREM', KEYS[9], ARGV[i]) end
  if redis.call('SCARD', KEYS[9]) >= maxActive then
    if ARGV[12] == '1' then return {-1} end
    return {-4, redis.call('SMEMBERS', KEYS[9])}
  end
end
local quota = tonumber(ARGV[22])
if nkeys >= 11 and quota > 0 and not reserve(KEYS[11], quota, tonumber(ARGV[23])) then
  return {-5, tonumber(ARGV[24])}
end
local entry, wait = '', -1
if ARGV[9] == '1' then
  entry, wait = enqueue(KEYS[5], KEYS[6], KEYS[2], KEYS[7], ARGV[21], ARGV[1], ARGV[2],
    tonumber(ARGV[20]), now_ms())
end
local set = {'owner', ARGV[2], 'status', 'queued', 'prompt', ARGV[3], 'model', ARGV[4],
  'aspect', ARGV[5], 'created', ARGV[6], 'updated', ARGV[6], 'attempts', 0, 'seq', 1,
  'e1', ARGV[8], 'i1', ARGV[15], 'lid', ARGV[15], 'qe', entry}
if ARGV[16] ~= '' then
  set[#set + 1] = 'wh'
  set[#set + 1] = ARGV[16]
  set[#set + 1] = 'whe'
  set[#set + 1] = ARGV[17]
end
if ARGV[22] ~= '0' then
  set[#set + 1] = 'nimg'
  set[#set + 1] = ARGV[23]
end
for i = 27, 26 + 2 * k do set[#set + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(set))
if r > 0 then
  local refs = {}
  for i = 1, r do
    refs[#refs + 1] = 'ref' .. (i - 1)
    refs[#refs + 1] = ARGV[27 + 2 * k + i]
  end
  redis.call('HSET', KEYS[#KEYS], unpack(refs))
end
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[14], '*', 'j', ARGV[1], 'e', ARGV[15], 'p', '0',
  'n', ARGV[8], 'o', ARGV[2])
webhook(KEYS[4], ARGV[16], ARGV[17], 'queued', ARGV[1], ARGV[15], ARGV[15])
if nkeys >= 8 then
  redis.call('ZADD', KEYS[8], ARGV[15], ARGV[1])
  if ARGV[18] ~= '0' then
    -- Renewed at most once a minute: then trimmed of the ids that expired, and to its newest 100,000.
    redis.call('EXPIRE', KEYS[8], ARGV[18])
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. ARGV[25])
    redis.call('ZREMRANGEBYRANK', KEYS[8], 0, -${INDEX_MAX + 1})
  end
end
if owned and maxActive > 0 then
  redis.call('SADD', KEYS[9], ARGV[1])
  redis.call('EXPIRE', KEYS[9], ARGV[7])
end
return {1, wait}
`;

/**
 * With N > 1 partitions, the owner's limits in their own step before CREATE (the owner's keys share
 * the owner's tag, not the job's): counts the submission and reserves an active slot for the id.
 */
export const OWNER = `
-- KEYS[1] the owner's set of active job ids, KEYS[2] the owner's submission counter, KEYS[3] the
-- owner's usage of today
-- ARGV[1] id, [2] submissions per minute (0: none), [3] max active jobs (0: none), [4] ttl seconds of
-- the set, [5] "1" on the second pass (the rate was counted), [6] images per owner per day (0: none),
-- [7] images this job asks for, [8] seconds until the day ends, [9..] ids of ended jobs to drop
-- Returns {1, added, reserved} (added: 1 when the id joined the set; reserved: images reserved),
-- {-3, seconds to wait}, {-1} at the cap, {-4, <active ids>} at the cap on the first pass,
-- {-5, seconds to wait} when the owner's images of the day are used up
${RESERVE_LUA}
local rate = tonumber(ARGV[2])
if rate > 0 and ARGV[5] ~= '1' then
  local count = redis.call('INCR', KEYS[2])
  if count == 1 then redis.call('EXPIRE', KEYS[2], 60) end
  if count > rate then return {-3, redis.call('TTL', KEYS[2])} end
end
local maxActive = tonumber(ARGV[3])
local added = 0
if maxActive > 0 then
  for i = 9, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end
  if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= maxActive then
    if ARGV[5] == '1' then return {-1} end
    return {-4, redis.call('SMEMBERS', KEYS[1])}
  end
end
local quota, images = tonumber(ARGV[6]), tonumber(ARGV[7])
if quota <= 0 then
  images = 0
elseif not reserve(KEYS[3], quota, images) then
  return {-5, tonumber(ARGV[8])}
end
if maxActive > 0 then
  added = redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return {1, added, images}
`;

/** Gives back what OWNER took for a submit that created nothing (N > 1 partitions). */
export const RELEASE = `
-- KEYS[1] the owner's set of active job ids, KEYS[2] the owner's submission counter, KEYS[3] the
-- owner's usage of today
-- ARGV[1] id, [2] "1" to drop the id from the set, [3] "1" to uncount the submission, [4] images
-- reserved to give back
if ARGV[2] == '1' then redis.call('SREM', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[3], 'reserved', -tonumber(ARGV[4])) end
return 1
`;

/**
 * Hands a seed entry's adopted job to the waiting room (or straight back onto the stream when nobody
 * waits), so that other services' jobs take their owners' turns too; acknowledges the seed entry.
 */
export const PARK = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] waiting room, KEYS[4] its clock, KEYS[5] pace hash
-- ARGV[1] entry id, [2] group, [3] consumer that must hold the entry ('' to skip the check),
-- ARGV[4] job id, [5] the partition's pace cap
-- Returns {1, wait} when the job waits for its turn or is back on the stream (wait as CREATE's),
-- {0} when it is not queued (nothing parked), {-2} when the lease is lost (nothing written)
${PACE_LUA}
${PARK_LUA}
${ENQUEUE_LUA}
local p = redis.call('XPENDING', KEYS[2], ARGV[2], ARGV[1], ARGV[1], 1)
if ARGV[3] ~= '' and not (#p == 1 and p[1][2] == ARGV[3]) then return {-2} end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'status', 'owner')
if f[1] ~= 'queued' then return {0} end
if redis.call('ZSCORE', KEYS[3], ARGV[4] .. ' ' .. f[2]) then return {1, -1} end
local entry, wait = enqueue(KEYS[3], KEYS[4], KEYS[2], KEYS[5], ARGV[2], ARGV[4], f[2],
  tonumber(ARGV[5]), now_ms())
if entry ~= '' then redis.call('HSET', KEYS[1], 'qe', entry) end
return {1, wait}
`;
