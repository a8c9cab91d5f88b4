/**
 * The safety poll of a push-woken broker, as one script call over every partition: does anything wait
 * that a missed wake-up would leave waiting (unclaimed entries, jobs in a waiting room, due retries,
 * stalled leases, a feed that moved)? The caller then does only the work the answer asks for.
 */
import type { RedisReply } from "../redis/types.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import type { ProbeResult } from "./types.ts";

/** Runs the probe: one script call, whatever the number of partitions. */
export async function probe(
  ctx: RedisContext,
  leaseMs: number,
  now = Date.now(),
): Promise<ProbeResult> {
  const k = ctx.keys;
  const keys = ctx.all.flatMap((p) => [k.jobs(p), k.delayed(p), k.room(p), k.events(p)]);
  if (k.tagged) keys.push(k.intake);
  const args = [String(now), GROUP, String(leaseMs), k.tagged ? "1" : "0", String(ctx.partitions)];
  const reply = await ctx.run("probe", keys, args) as RedisReply[];
  const [unclaimed, waiting, due, stalled, taken, nextDueMs] = reply.slice(0, 6).map(Number);
  const feeds = reply.slice(6).map(String);
  return { unclaimed, waiting, due, stalled, taken, nextDueMs, feeds };
}
