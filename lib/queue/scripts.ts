/**
 * Lua scripts of the Redis broker, one per concern. A job is one hash: its fields, its image and its
 * events (`e<seq>`, the notification JSON; the event id is `seq`), so each step touches one key plus a stream.
 */

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
  "reason",
] as const;

const FIELDS_LUA = `local FIELDS = {${RECORD_FIELDS.map((f) => `'${f}'`).join(", ")}}`;

const TERMINAL_LUA = `local TERMINAL = {succeeded = true, failed = true, canceled = true}`;

/** Creates a job unless its id exists or a limit refuses it; with ARGV[9] = "1" also enqueues it. */
export const CREATE = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] the owner's set of active job ids,
-- KEYS[4] the owner's submission counter for the current one-minute window
-- ARGV[1] id, [2] owner, [3] prompt, [4] model, [5] aspect ratio, [6] now (ISO), [7] ttl seconds,
-- ARGV[8] queued notification JSON, [9] "1" to enqueue, [10] max active jobs per owner (0: none),
-- ARGV[11] max stream length (0: none), [12] prefix of job keys (only read when pruning the active set),
-- ARGV[13] submissions per owner per minute (0: none)
-- Returns {1} when created, {0, <record fields>} of the job that already has this id,
-- {-1} when the owner has too many active jobs, {-2} when the queue is full,
-- {-3, seconds to wait} when the owner is over the rate limit
${FIELDS_LUA}
${TERMINAL_LUA}
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HMGET', KEYS[1], unpack(FIELDS))}
end
local rate = tonumber(ARGV[13])
if rate > 0 then
  local count = redis.call('INCR', KEYS[4])
  if count == 1 then redis.call('EXPIRE', KEYS[4], 60) end
  if count > rate then return {-3, redis.call('TTL', KEYS[4])} end
end
local maxQueued = tonumber(ARGV[11])
if ARGV[9] == '1' and maxQueued > 0 and redis.call('XLEN', KEYS[2]) >= maxQueued then
  return {-2}
end
local maxActive = tonumber(ARGV[10])
if maxActive > 0 and redis.call('SCARD', KEYS[3]) >= maxActive then
  -- At the cap: drop ids of jobs that ended (or expired), then count again.
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    local status = redis.call('HGET', ARGV[12] .. member, 'status')
    if not status or TERMINAL[status] then redis.call('SREM', KEYS[3], member) end
  end
  if redis.call('SCARD', KEYS[3]) >= maxActive then return {-1} end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'status', 'queued', 'prompt', ARGV[3],
  'model', ARGV[4], 'aspect', ARGV[5], 'created', ARGV[6], 'updated', ARGV[6],
  'attempts', 0, 'seq', 1, 'e1', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[7])
if ARGV[9] == '1' then
  redis.call('XADD', KEYS[2], '*', 'Id', ARGV[1])
end
if maxActive > 0 then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
return {1}
`;

/** Moves a queued job to running (appending `started`) or counts a redelivered running one. */
export const START = `
-- KEYS[1] job hash, KEYS[2] feed stream
-- ARGV[1] now (ISO), [2] started notification JSON, [3] feed max length, [4] job id
-- Returns false when there is nothing to run, else the record fields after the change
${FIELDS_LUA}
local r = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local status = r[2]
if not status or (status ~= 'queued' and status ~= 'running') then return false end
local attempts = tonumber(r[8]) + 1
r[8] = tostring(attempts)
if status == 'queued' then
  local seq = tonumber(r[12]) + 1
  redis.call('HSET', KEYS[1], 'status', 'running', 'updated', ARGV[1], 'attempts', attempts,
    'seq', seq, 'e' .. seq, ARGV[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'j', ARGV[4], 'e', seq, 'n', ARGV[2])
  r[2] = 'running'
  r[6] = ARGV[1]
  r[12] = tostring(seq)
else
  redis.call('HSET', KEYS[1], 'attempts', attempts)
end
return r
`;

/** Ends a job once (compare-and-set on its status), appends the terminal event, acknowledges. */
export const FINISH = `
-- KEYS[1] job hash, KEYS[2] feed stream, KEYS[3] jobs stream, KEYS[4] dead-letter stream
-- ARGV[1] entry id ('' for none), [2] group, [3] status, [4] notification JSON (image omitted),
-- ARGV[5] now (ISO), [6] ttl seconds, [7] feed max length, [8] job id, [9] error, [10] mime type,
-- ARGV[11] revised prompt, [12] image base64, [13] dead-letter reason ('' for none),
-- ARGV[14] only when the status is one of these (space-separated, '' for any), [15] failure reason
-- Returns the new event's seq, 0 when the job had already ended, -1 when it is gone
${TERMINAL_LUA}
if ARGV[1] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[2], ARGV[1])
  redis.call('XDEL', KEYS[3], ARGV[1])
end
if ARGV[13] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'Id', ARGV[8], 'reason', ARGV[13], 'at', ARGV[5])
end
local f = redis.call('HMGET', KEYS[1], 'status', 'seq')
if not f[1] then return -1 end
if TERMINAL[f[1]] then return 0 end
if ARGV[14] ~= '' and not string.find(' ' .. ARGV[14] .. ' ', ' ' .. f[1] .. ' ', 1, true) then
  return 0
end
local seq = tonumber(f[2]) + 1
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated', ARGV[5], 'seq', seq, 'e' .. seq, ARGV[4],
  'error', ARGV[9], 'mime', ARGV[10], 'revised', ARGV[11], 'image', ARGV[12], 'reason', ARGV[15])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'j', ARGV[8], 'e', seq, 'n', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return seq
`;

/** Puts a running job back to queued, scheduled at its due time, and acknowledges the delivery. */
export const RETRY = `
-- KEYS[1] job hash, KEYS[2] jobs stream, KEYS[3] delayed sorted set
-- ARGV[1] entry id, [2] group, [3] due time (ms), [4] reason, [5] now (ISO), [6] job id
-- Returns 1 when scheduled, 0 when the job is no longer running
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[4], 'updated', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[6])
return 1
`;

/** Moves due delayed jobs back onto the jobs stream. */
export const PROMOTE = `
-- KEYS[1] delayed sorted set, KEYS[2] jobs stream
-- ARGV[1] now (ms), [2] at most this many
-- Returns how many jobs moved
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'Id', id)
end
return #ids
`;
