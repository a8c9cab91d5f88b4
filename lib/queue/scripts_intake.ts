/** The Lua script of the intake mover (N > 1 partitions): each intake entry copied once. */

/**
 * Copies intake entries to one partition's stream, each once: the partition remembers each intake id
 * it copied (in the same script), so a copy run again (a mover that died before its acknowledgement,
 * a resend after a reconnect) adds nothing.
 */
export const COPY_INTAKE = `
-- KEYS[1] the partition's jobs stream, KEYS[2] the intake ids it copied (sorted set by time)
-- ARGV[1] now (ms), [2] forget marks older than this (ms), then per entry: its intake id, its
-- field count c, and c field names and values in turn
-- Returns how many entries were copied (not counting those copied before)
local copied = 0
local i = 3
while i <= #ARGV do
  local id, c = ARGV[i], tonumber(ARGV[i + 1])
  if not redis.call('ZSCORE', KEYS[2], id) then
    local fields = {}
    for k = 1, c do fields[k] = ARGV[i + 1 + k] end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    copied = copied + 1
  end
  i = i + 2 + c
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
return copied
`;
