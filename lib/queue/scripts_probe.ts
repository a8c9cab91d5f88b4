/** The Lua script of the safety poll of a push-woken broker (see redis_probe.ts). */

/**
 * KEYS, four per partition: jobs stream, delayed set, waiting room, feed; then, with a separate intake,
 * the intake stream. Read-only, so safe to run twice.
 */
export const PROBE = `
-- KEYS[4p+1] jobs stream, [4p+2] delayed set, [4p+3] waiting room, [4p+4] feed (p = 0 … N-1),
-- then KEYS[4N+1] the intake stream when ARGV[4] is "1"
-- ARGV[1] now (ms), [2] group, [3] lease (ms): a pending entry idle this long is stalled,
-- ARGV[4] "1" with an intake, [5] the number of partitions N
-- Returns {unclaimed entries, waiting jobs, due retries, stalled leases, taken entries, ms until the
-- next retry is due (-1: none), feed ids…} (one newest feed id per partition, "0-0" for an empty feed)
local n = tonumber(ARGV[5])
local unclaimed, waiting, due, stalled, taken, nextDue = 0, 0, 0, 0, 0, -1
local feeds = {}
local function pending(stream)
  if redis.call('EXISTS', stream) == 0 then return 0, 0 end
  local ok, summary = pcall(redis.call, 'XPENDING', stream, ARGV[2])
  if not ok then return redis.call('XLEN', stream), 0 end
  taken = taken + tonumber(summary[1])
  local idle = redis.call('XPENDING', stream, ARGV[2], 'IDLE', ARGV[3], '-', '+', 1)
  return redis.call('XLEN', stream) - tonumber(summary[1]), #idle
end
for p = 0, n - 1 do
  local new, old = pending(KEYS[4 * p + 1])
  unclaimed = unclaimed + new
  stalled = stalled + old
  due = due + redis.call('ZCOUNT', KEYS[4 * p + 2], '-inf', ARGV[1])
  local first = redis.call('ZRANGE', KEYS[4 * p + 2], 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = math.max(0, tonumber(first[2]) - tonumber(ARGV[1]))
    if nextDue < 0 or wait < nextDue then nextDue = wait end
  end
  waiting = waiting + redis.call('ZCARD', KEYS[4 * p + 3])
  local last = redis.call('XREVRANGE', KEYS[4 * p + 4], '+', '-', 'COUNT', 1)
  feeds[#feeds + 1] = last[1] and last[1][1] or '0-0'
end
if ARGV[4] == '1' then
  local new, old = pending(KEYS[4 * n + 1])
  unclaimed = unclaimed + new
  stalled = stalled + old
end
local out = {unclaimed, waiting, due, stalled, taken, nextDue}
for _, id in ipairs(feeds) do out[#out + 1] = id end
return out
`;
