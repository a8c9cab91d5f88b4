/**
 * Lua of the provider's pace and the owners' turns, shared by the Redis broker's scripts. Each
 * partition has a pace hash (GCRA with additive-increase, multiplicative-decrease on 429s) and a waiting
 * room: a sorted set of `"<job id> <owner>"` scored by start-time fair queuing, and a hash holding the
 * room's virtual clock (`_v`) and each owner's next start tag (`o:<owner>`).
 */

/** Tuning shared by the Lua pacer and the in-memory one (lib/pace/pacer.ts). */
export const PACE = {
  /** After a cut, the pace grows by this share of the cut pace per second (back to 2× in 10 s). */
  step: 0.1,
  /** The lowest learned pace, requests per second. */
  floor: 0.05,
  /** Without a fixed pace, a learned one is forgotten after this long without a 429. */
  resetMs: 600_000,
  /** A cut multiplies the pace by this. */
  cut: 0.5,
  /**
   * Tokens that may be taken at once: this many seconds' worth of the pace, at least two (so a turn
   * asked for a moment late is not lost: with one, every late ask would push the whole pace back).
   */
  burstSec: 0.2,
} as const;

/**
 * Lua `now_ms()`, `pace_rate(v, cap, now)`, `pace_take(key, want, cap, now)` and
 * `pace_wait(key, cap, now)`. `cap` is the partition's configured pace in requests/s (0: none, learn it
 * from 429s; -1: never paced). pace_take returns the tokens granted, the ms until the next one, and the
 * pace (0: unpaced).
 */
export const PACE_LUA = `
local PACE_STEP, PACE_FLOOR, PACE_RESET, PACE_BURST = ${PACE.step}, ${PACE.floor}, ${PACE.resetMs}, ${PACE.burstSec}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pace_rate(v, cap, now)
  if cap < 0 then return 0 end
  local rate = tonumber(v[3])
  if not rate then return cap end
  local cut = tonumber(v[4]) or 0
  if cap == 0 and now - cut >= PACE_RESET then return 0 end
  local grown = rate + rate * PACE_STEP * math.max(0, now - cut) / 1000
  if cap > 0 and grown >= cap then return cap end
  return grown
end
local function pace_take(key, want, cap, now)
  if cap < 0 then return want, 0, 0 end
  local v = redis.call('HMGET', key, 'tat', 'until', 'rate', 'cut', 'ws', 'wc', 'pc')
  local untilMs = tonumber(v[2]) or 0
  if now < untilMs then return 0, untilMs - now, pace_rate(v, cap, now) end
  local rate = pace_rate(v, cap, now)
  if rate <= 0 then
    -- Unpaced: count what goes out per second, the starting point of a cut on the first 429.
    local ws = tonumber(v[5]) or 0
    if now - ws >= 1000 then
      local prev = 0
      if now - ws < 2000 then prev = tonumber(v[6]) or 0 end
      redis.call('HSET', key, 'ws', now, 'wc', want, 'pc', prev)
    else
      redis.call('HINCRBY', key, 'wc', want)
    end
    return want, 0, 0
  end
  local interval = 1000 / rate
  local slack = math.max(1, math.floor(rate * PACE_BURST) - 1) * interval
  local tat = math.max(tonumber(v[1]) or 0, now)
  local granted = 0
  while granted < want and tat <= now + slack do
    tat = tat + interval
    granted = granted + 1
  end
  if granted > 0 then redis.call('HSET', key, 'tat', tostring(tat)) end
  return granted, math.max(0, math.ceil(tat - slack - now)), rate
end
local function pace_wait(key, cap, now)
  if cap < 0 then return 0, 0 end
  local v = redis.call('HMGET', key, 'tat', 'until', 'rate', 'cut')
  local untilMs = tonumber(v[2]) or 0
  local rate = pace_rate(v, cap, now)
  if now < untilMs then return untilMs - now, rate end
  if rate <= 0 then return 0, 0 end
  local slack = math.max(1, math.floor(rate * PACE_BURST) - 1) * 1000 / rate
  return math.max(0, math.ceil((tonumber(v[1]) or 0) - slack - now)), rate
end
`;

/**
 * Lua `park(room, clock, id, owner, front)`: puts a job in the waiting room. A new job starts at the
 * later of the room's virtual clock and its owner's next tag (so every owner with jobs waiting gets one
 * turn per round, and an owner's own jobs keep their order); `front` puts a job back at the clock
 * (a retry, or a turn a 429 took away), ahead of its owner's later jobs. Returns the score.
 */
export const PARK_LUA = `
local function park(room, clock, id, owner, front)
  local t = redis.call('HMGET', clock, '_v', 'o:' .. owner)
  local v = tonumber(t[1] or '0')
  local score = v
  if not front then
    score = math.max(v, tonumber(t[2] or '0'))
    redis.call('HSET', clock, 'o:' .. owner, score + 1)
  end
  redis.call('ZADD', room, score, id .. ' ' .. owner)
  return score
end
`;

/**
 * Lua `enqueue(room, clock, stream, pace, group, id, owner, cap, now)`: a job that is ready to run goes
 * straight onto the jobs stream when nobody waits (the room is empty, no entry waits for a worker) and
 * the pace has a turn now; else it is parked. Returns the stream entry ('' when parked) and, when it was
 * parked in an empty room for want of a turn, the ms until the pace has one (else -1).
 */
export const ENQUEUE_LUA = `
local function enqueue(room, clock, stream, pace, group, id, owner, cap, now)
  local empty = redis.call('ZCARD', room) == 0
  if empty then
    local lag = redis.call('XLEN', stream)
    if lag > 0 then
      local p = redis.pcall('XPENDING', stream, group)
      if type(p) == 'table' and not p.err then lag = lag - tonumber(p[1]) end
    end
    if lag <= 0 then
      local granted, wait = pace_take(pace, 1, cap, now)
      if granted == 1 then return redis.call('XADD', stream, '*', 'Id', id), -1 end
      park(room, clock, id, owner, false)
      return '', wait
    end
  end
  -- Others wait: their turns come first, and the worker that reads the waiting entry looks next.
  park(room, clock, id, owner, false)
  return '', -1
end
`;

/** Gives turns: moves up to ARGV[1] waiting jobs, in fair order, onto the jobs stream as the pace allows. */
export const TURN = `
-- KEYS[1] the partition's waiting room, KEYS[2] its clock hash, KEYS[3] its jobs stream,
-- KEYS[4] its pace hash
-- ARGV[1] most jobs to move, [2] the partition's pace cap (requests/s; 0: learned; -1: never paced),
-- ARGV[3] the partition's job hash prefix (a moved job's hash, in the same slot, records its entry
-- as BullMQ's scripts build their keys from a prefix)
-- Returns {moved, jobs left waiting, ms until the pace has its next turn, pace × 1000 (0: unpaced)}
${PACE_LUA}
local now = now_ms()
local cap = tonumber(ARGV[2])
local waiting = redis.call('ZCARD', KEYS[1])
if waiting == 0 then
  local wait, rate = pace_wait(KEYS[4], cap, now)
  return {0, 0, wait, math.floor(rate * 1000)}
end
local granted, wait, rate = pace_take(KEYS[4], math.min(tonumber(ARGV[1]), waiting), cap, now)
local moved = 0
if granted > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], granted)
  local v = nil
  for i = 1, #popped, 2 do
    local member, score = popped[i], tonumber(popped[i + 1])
    local space = string.find(member, ' ', 1, true)
    local id, owner = string.sub(member, 1, space - 1), string.sub(member, space + 1)
    local entry = redis.call('XADD', KEYS[3], '*', 'Id', id)
    redis.call('HSET', ARGV[3] .. id, 'qe', entry)
    local last = tonumber(redis.call('HGET', KEYS[2], 'o:' .. owner) or '0')
    if last <= score + 1 then redis.call('HDEL', KEYS[2], 'o:' .. owner) end
    v = score
    moved = moved + 1
  end
  if v then redis.call('HSET', KEYS[2], '_v', tostring(v)) end
end
return {moved, waiting - moved, wait, math.floor(rate * 1000)}
`;

/** Tells the pace of a provider 429: every turn waits out `Retry-After`, and the pace is cut once. */
export const THROTTLE = `
-- KEYS[1] a partition's pace hash
-- ARGV[1] the ms the provider asked to wait, [2] the partition's pace cap (as TURN's)
-- Returns the pace × 1000 after the cut (0: unpaced)
${PACE_LUA}
local now = now_ms()
local cap = tonumber(ARGV[2])
if cap < 0 then return 0 end
local wait = math.max(0, tonumber(ARGV[1]))
local v = redis.call('HMGET', KEYS[1], 'tat', 'until', 'rate', 'cut', 'ws', 'wc', 'pc')
local untilMs = math.max(tonumber(v[2]) or 0, now + wait)
redis.call('HSET', KEYS[1], 'until', untilMs)
local cut = tonumber(v[4]) or 0
if now - cut < math.max(1000, wait) then return math.floor(pace_rate(v, cap, now) * 1000) end
local rate = pace_rate(v, cap, now)
if rate <= 0 then rate = math.max(1, tonumber(v[6]) or 0, tonumber(v[7]) or 0) end
rate = math.max(PACE_FLOOR, rate * ${PACE.cut})
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'cut', untilMs)
redis.call('EXPIRE', KEYS[1], math.ceil(PACE_RESET / 1000) + 3600)
return math.floor(rate * 1000)
`;
