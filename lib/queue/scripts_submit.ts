/**
 * Lua scripts of the Redis broker's submits: create-if-absent with the limits (CREATE), and with
 * N > 1 the owner's own step (OWNER) and its undo (RELEASE). See scripts.ts for the job hash's layout.
 */
import { FIELDS_LUA, WEBHOOK_LUA } from "./scripts.ts";

/**
 * Creates a job unless its id exists or a limit refuses it; with ARGV[9] = "1" also enqueues it. With
 * one partition it also checks the owner's limits (KEYS[3], KEYS[4]); with more, OWNER does that first.
 */
export const CREATE = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] feed stream, KEYS[4] webhook outbox, and with one
-- partition: KEYS[5] the owner's job index, KEYS[6] the owner's set of active job ids, KEYS[7] the
-- owner's submission counter for the current one-minute window
-- ARGV[1] id, [2] owner, [3] prompt, [4] model, [5] aspect ratio, [6] now (ISO), [7] ttl seconds of the active set,
-- ARGV[8] queued notification JSON, [9] "1" to enqueue, [10] max active jobs per owner (0: none),
-- ARGV[11] max stream length (0: none), [12] "1" on the second pass (the rate was counted, ids of
-- ended jobs follow), [13] submissions per owner per minute (0: none), [14] oldest feed id to keep,
-- [15] now (ms), [16] webhook URL ('' none), [17] webhook event types (space-separated, '' default),
-- [18] ttl seconds of the owner's job index ('0': leave its expiry as it is), [19] "1" when the id was made by the server (it cannot
-- exist: no EXISTS), [20] k, the number of more field-value pairs of the job hash (n, resolution,
-- quality, the references' count), [21..20+2k] those pairs, [21+2k] r, the number of reference
-- images, [22+2k..21+2k+r] the references, [22+2k+r..] ids to drop from the set
-- With r > 0 the last key, after those above, is the job's references hash (written as ref0…).
-- The job hash gets no expiry: it lives until the job ends (finish, cancel or dead letter set one).
-- Returns {1} when created, {0, <record fields>} of the job that already has this id,
-- {-1} when the owner has too many active jobs, {-2} when the queue is full,
-- {-3, seconds to wait} when the owner is over the rate limit, {-4, <active ids>} when the owner is
-- at the cap on the first pass (the caller reads those jobs and calls again with the ended ones)
${FIELDS_LUA}
${WEBHOOK_LUA}
if ARGV[19] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HMGET', KEYS[1], unpack(FIELDS))}
end
local k = tonumber(ARGV[20])
local r = tonumber(ARGV[21 + 2 * k])
local nkeys = #KEYS
if r > 0 then nkeys = nkeys - 1 end
local owned = nkeys >= 7
local rate = tonumber(ARGV[13])
if owned and rate > 0 and ARGV[12] ~= '1' then
  local count = redis.call('INCR', KEYS[7])
  if count == 1 then redis.call('EXPIRE', KEYS[7], 60) end
  if count > rate then return {-3, redis.call('TTL', KEYS[7])} end
end
local maxQueued = tonumber(ARGV[11])
if ARGV[9] == '1' and maxQueued > 0 and redis.call('XLEN', KEYS[2]) >= maxQueued then
  return {-2}
end
local maxActive = tonumber(ARGV[10])
if owned and maxActive > 0 then
  for i = 22 + 2 * k + r, #ARGV do redis.call('SREM', KEYS[6], ARGV[i]) end
  if redis.call('SCARD', KEYS[6]) >= maxActive then
    if ARGV[12] == '1' then return {-1} end
    return {-4, redis.call('SMEMBERS', KEYS[6])}
  end
end
local entry = ''
if ARGV[9] == '1' then
  entry = redis.call('XADD', KEYS[2], '*', 'Id', ARGV[1])
end
local set = {'owner', ARGV[2], 'status', 'queued', 'prompt', ARGV[3], 'model', ARGV[4],
  'aspect', ARGV[5], 'created', ARGV[6], 'updated', ARGV[6], 'attempts', 0, 'seq', 1,
  'e1', ARGV[8], 'qe', entry}
if ARGV[16] ~= '' then
  set[#set + 1] = 'wh'
  set[#set + 1] = ARGV[16]
  set[#set + 1] = 'whe'
  set[#set + 1] = ARGV[17]
end
for i = 21, 20 + 2 * k do set[#set + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(set))
if r > 0 then
  local refs = {}
  for i = 1, r do
    refs[#refs + 1] = 'ref' .. (i - 1)
    refs[#refs + 1] = ARGV[21 + 2 * k + i]
  end
  redis.call('HSET', KEYS[#KEYS], unpack(refs))
end
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[14], '*', 'j', ARGV[1], 'e', 1, 'n', ARGV[8],
  'o', ARGV[2])
webhook(KEYS[4], ARGV[16], ARGV[17], 'queued', ARGV[1], 1, ARGV[15])
if nkeys >= 5 then
  redis.call('ZADD', KEYS[5], ARGV[15], ARGV[1])
  if ARGV[18] ~= '0' then redis.call('EXPIRE', KEYS[5], ARGV[18]) end
end
if owned and maxActive > 0 then
  redis.call('SADD', KEYS[6], ARGV[1])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
end
return {1}
`;

/**
 * With N > 1 partitions, the owner's limits in their own step before CREATE (the owner's keys share
 * the owner's tag, not the job's): counts the submission and reserves an active slot for the id.
 */
export const OWNER = `
-- KEYS[1] the owner's set of active job ids, KEYS[2] the owner's submission counter
-- ARGV[1] id, [2] submissions per minute (0: none), [3] max active jobs (0: none), [4] ttl seconds of
-- the set, [5] "1" on the second pass (the rate was counted), [6..] ids of ended jobs to drop
-- Returns {1, added} (added: 1 when the id joined the set), {-3, seconds to wait}, {-1} at the cap,
-- {-4, <active ids>} at the cap on the first pass
local rate = tonumber(ARGV[2])
if rate > 0 and ARGV[5] ~= '1' then
  local count = redis.call('INCR', KEYS[2])
  if count == 1 then redis.call('EXPIRE', KEYS[2], 60) end
  if count > rate then return {-3, redis.call('TTL', KEYS[2])} end
end
local maxActive = tonumber(ARGV[3])
if maxActive <= 0 then return {1, 0} end
for i = 6, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= maxActive then
  if ARGV[5] == '1' then return {-1} end
  return {-4, redis.call('SMEMBERS', KEYS[1])}
end
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, added}
`;

/** Gives back what OWNER took for a submit that created nothing (N > 1 partitions). */
export const RELEASE = `
-- KEYS[1] the owner's set of active job ids, KEYS[2] the owner's submission counter
-- ARGV[1] id, [2] "1" to drop the id from the set, [3] "1" to uncount the submission
if ARGV[2] == '1' then redis.call('SREM', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 1
`;
