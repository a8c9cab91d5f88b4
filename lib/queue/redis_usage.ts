/** Owners' usage of the provider on the Redis broker: one hash per owner and UTC day. */
import { emptyDay, utcDay } from "../pace/usage.ts";
import { fieldsToObject } from "./redis_codec.ts";
import type { RedisContext } from "./redis_context.ts";
import type { Usage, UsageDay } from "./types.ts";

/** How long an owner's day is kept (GET /v1/usage reaches a month back). */
const DAY_TTL_SEC = 35 * 86_400;

/** What ended, for the owner's day. */
export interface Ended {
  owner: string;
  /** The job's creation time (ISO): its day is the one counted. */
  created: string;
  /** Images the job asked for when the quota reserved them ('' when it did not). */
  asked: string;
  type: string;
  usage?: Usage;
}

/**
 * Counts a job's end on its owner's day (the day it was submitted): the images made and their cost,
 * the outcome, and gives back the reserved images it did not make. Runs once per job, after the one
 * terminal write that ended it; a failure is thrown to the caller, which reports it.
 */
export async function recordUsage(ctx: RedisContext, ended: Ended): Promise<void> {
  if (!ended.created) return;
  const key = ctx.keys.ownerUsage(ended.owner, utcDay(ended.created));
  const made = ended.usage?.images ?? 0;
  const commands: string[][] = [["HINCRBY", key, ended.type, "1"]];
  if (made > 0) commands.push(["HINCRBY", key, "images", String(made)]);
  const ticks = ended.usage?.costUsdTicks ?? 0;
  if (ticks > 0) commands.push(["HINCRBY", key, "ticks", String(Math.round(ticks))]);
  const back = ended.asked === "" ? 0 : Math.max(0, Number(ended.asked) - made);
  if (back > 0) commands.push(["HINCRBY", key, "reserved", String(-back)]);
  commands.push(["EXPIRE", key, String(DAY_TTL_SEC)]);
  const replies = await ctx.client.pipeline(commands);
  for (const reply of replies) if (reply instanceof Error) throw reply;
}

/** Reads an owner's day. */
export async function readUsage(ctx: RedisContext, owner: string, day: string): Promise<UsageDay> {
  const fields = fieldsToObject(
    await ctx.client.send(["HGETALL", ctx.keys.ownerUsage(owner, day)]),
  );
  const n = (name: string) => Number(fields[name] ?? 0) || 0;
  return {
    ...emptyDay(day),
    images: n("images"),
    costUsdTicks: n("ticks"),
    jobs: { succeeded: n("succeeded"), failed: n("failed"), canceled: n("canceled") },
    reserved: Math.max(0, n("reserved")),
  };
}
