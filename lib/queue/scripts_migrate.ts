/**
 * Lua scripts of the partition migration (see migrate_partitions.ts). Each is safe to run twice: a
 * migration that died halfway is run again from the start.
 */

/** One page of SCAN on the node that holds KEYS[1]'s slot (on a Cluster SCAN sees one node only). */
export const SCAN_SLOT = `
-- KEYS[1] any key of the slot to scan (it routes the call; it is not read)
-- ARGV[1] cursor, [2] MATCH pattern, [3] COUNT
-- Returns SCAN's reply: {next cursor, keys}
return redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
`;

/** Writes a whole hash (a job's, or its references') at its new key, replacing what is there. */
export const PUT_HASH = `
-- KEYS[1] the hash's new key
-- ARGV[1] its time to live in ms (0: none), [2..] its field-value pairs
-- Returns 1
redis.call('DEL', KEYS[1])
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;

/**
 * Adds entries of an old jobs stream to a new partition's stream, each once: the partition remembers
 * the old entries it took (in the same script), and a job hash that names the old entry (`qe` queued,
 * `entry` running) names the new one.
 */
export const MOVE_ENTRIES = `
-- KEYS[1] the new partition's jobs stream, KEYS[2] the old entries it took (a set),
-- KEYS[3..n+2] the entries' job hashes (new layout), in order
-- ARGV per entry: its mark ("<old stream> <old id>"), its old id, its field count c, and c field
-- names and values in turn
-- Returns how many entries were added (not counting those taken before)
local added = 0
local i, k = 1, 3
while i <= #ARGV do
  local mark, old, c = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('SISMEMBER', KEYS[2], mark) == 0 then
    local fields = {}
    for f = 1, c do fields[f] = ARGV[i + 2 + f] end
    local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
    local job = redis.call('HMGET', KEYS[k], 'qe', 'entry')
    if job[1] == old then redis.call('HSET', KEYS[k], 'qe', id) end
    if job[2] == old then redis.call('HSET', KEYS[k], 'entry', id) end
    redis.call('SADD', KEYS[2], mark)
    added = added + 1
  end
  i = i + 3 + c
  k = k + 1
end
return added
`;

/**
 * Puts jobs from an old waiting room into a new one, each at the new room's clock plus its distance
 * from the old room's clock (so the old order holds), and moves each owner's next tag past it.
 */
export const ROOM_IN = `
-- KEYS[1] the new waiting room, KEYS[2] its clock hash
-- ARGV pairs: a member ("<job id> <owner>"), its score minus the old room's clock
-- Returns how many members were put (run again, it puts them at the same scores)
local v = tonumber(redis.call('HGET', KEYS[2], '_v') or '0')
for i = 1, #ARGV, 2 do
  local member, score = ARGV[i], v + tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[1], score, member)
  local space = string.find(member, ' ', 1, true)
  if space then
    local tag = 'o:' .. string.sub(member, space + 1)
    if tonumber(redis.call('HGET', KEYS[2], tag) or '0') < score + 1 then
      redis.call('HSET', KEYS[2], tag, score + 1)
    end
  end
end
return #ARGV / 2
`;

/** Renews the migration's lock while this migration holds it. */
export const HOLD_LOCK = `
-- KEYS[1] the lock; ARGV[1] this migration's token, [2] the lock's time to live (ms)
-- Returns 1 when renewed, 0 when another migration holds it (or nobody does)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/** Drops the migration's lock if this migration holds it. */
export const DROP_LOCK = `
-- KEYS[1] the lock; ARGV[1] this migration's token
-- Returns 1 when dropped, else 0
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`;
