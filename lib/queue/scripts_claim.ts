/**
 * TURN and the claim's read in one script call, for brokers that cannot block (Upstash bills each
 * call): the waiting room's turns, then XREADGROUP of what the stream holds for this consumer.
 */
import { TURN } from "../pace/lua.ts";

/** TURN (its KEYS and ARGV[1..3]) followed by the claim's read. */
export const TURN_CLAIM = `
-- KEYS and ARGV[1..3] as TURN's (KEYS[3] the jobs stream); ARGV[4] group, [5] consumer, [6] count
-- Returns {TURN's reply, the XREADGROUP reply (nil when nothing is new)}
-- Safe to run twice: TURN is, and a second read finds only entries no one took.
local function turn()
${TURN}
end
local given = turn()
local read = redis.call('XREADGROUP', 'GROUP', ARGV[4], ARGV[5], 'COUNT', ARGV[6], 'STREAMS', KEYS[3], '>')
return {given, read}
`;
