/**
 * Wake-ups published by the scripts that write what a waiting process must read: over Upstash nothing
 * blocks, so a submit, a due retry, a turn given later, a cancel and every feed item PUBLISH a one-letter
 * wake-up on the deployment's channel, inside the script that writes them (one EVAL, one billed command).
 * Payloads: "j" new work on a stream (and a feed item), "f" a feed item, "c" a cancel (and a feed item),
 * "w" a webhook delivery (or a Socket.IO notice) added to an outbox.
 */

/** A wake-up's payload: work to claim, a feed item to read, a cancel to act on, a delivery to make. */
export type Wake = "j" | "f" | "c" | "w";

/**
 * A Lua comment in the outbox's `webhook()` (scripts.ts) that `withWake` turns into a "w" wake-up on
 * both channels, so that an idle dispatcher over Upstash waits for one instead of polling.
 */
export const WEBHOOK_WAKE_MARK = "-- wake: a delivery was added";

/**
 * The wake-ups' channels of the deployment whose keys start with `prefix`: `all` (every wake-up, for
 * processes with a relay) and `work` ("j" and "c" only, for ROLE=worker processes, which would pay for
 * feed wake-ups they never use: Upstash bills each message a subscription delivers).
 */
export function wakeChannels(prefix: string): { all: string; work: string } {
  return { all: `${prefix}wake`, work: `${prefix}wake:work` };
}

/**
 * Per script that wakes someone: a Lua expression of the script's reply `r` (and its KEYS and ARGV)
 * giving the payload to publish, or false to publish nothing (the script wrote nothing to read).
 */
export const WAKE_RULES = {
  // {1, wait}: created (queued feed item, and a job on the stream or in the waiting room)
  create: `type(r) == 'table' and r[1] == 1 and 'j'`,
  // the record after the change: a started feed item (or a takeover's restart)
  start: `type(r) == 'table' and 'f'`,
  // {seq, …}: a terminal feed item; a cancel also tells the worker running it
  finish: `type(r) == 'table' and (ARGV[3] == 'canceled' and 'c' or 'f')`,
  // 1: a job given back after a 429 waits in the room again (a later retry is promote's to announce)
  retry: `r == 1 and ARGV[7] == '1' and 'j'`,
  // how many due retries moved back to the waiting rooms
  promote: `tonumber(r) > 0 and 'j'`,
  // a turn asked for later (kick): {moved, waiting, waitMs, pace}
  kickTurn: `type(r) == 'table' and tonumber(r[1]) > 0 and 'j'`,
  // {1, wait}: an adopted seed entry's job waits in the room (or is back on the stream)
  park: `type(r) == 'table' and r[1] == 1 and 'j'`,
  // how many intake entries were copied onto the partition's stream
  copyIntake: `tonumber(r) > 0 and 'j'`,
} as const;

/** A script whose wake-up rule is in WAKE_RULES. */
export type WakingScript = keyof typeof WAKE_RULES;

/** A Lua string literal of `text` (long brackets cannot be closed by any channel name here). */
function luaString(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/**
 * Wraps `source` so that, after it ran, it publishes what `rule` gives on `channels.all` and, but for
 * "f", on `channels.work`. Its KEYS, ARGV and return value stay those of `source` (the channels are
 * written into the source, not passed), and it is as safe to run twice as `source` is: a second run
 * that writes nothing publishes nothing.
 */
export function withWake(
  source: string,
  rule: string,
  channels: { all: string; work: string },
): string {
  const delivery = `redis.call('PUBLISH', ${luaString(channels.all)}, 'w') ` +
    `redis.call('PUBLISH', ${luaString(channels.work)}, 'w')`;
  return `-- wake-ups on ${channels.all} after the script below (see wake_scripts.ts)
local function body()
${source.replaceAll(WEBHOOK_WAKE_MARK, delivery)}
end
local r = body()
local wake = ${rule}
if wake then
  redis.call('PUBLISH', ${luaString(channels.all)}, wake)
  if wake ~= 'f' then redis.call('PUBLISH', ${luaString(channels.work)}, wake) end
end
return r
`;
}
