/**
 * The provider's turns on the Redis broker: each partition's waiting room gives turns as its share of
 * the pace allows (TURN), a 429 slows every partition's pace (THROTTLE), and a submit that parked a job
 * in an empty room asks for its turn once the pace has one (so a job never waits for a claim loop's
 * long block).
 */
import type { RedisReply } from "../redis/types.ts";
import type { RedisContext } from "./redis_context.ts";
import type { Turn } from "./types.ts";

/** The deployment's pace (requests/s) from one partition's share × 1000 as TURN answers it. */
function deploymentPace(ctx: RedisContext, milli: number): number | null {
  return milli > 0 ? milli / 1000 * ctx.partitions : null;
}

/** Moves up to `want` waiting jobs of partition `p` onto its stream, owners taking turns. */
export async function turn(
  ctx: RedisContext,
  p: number,
  want: number,
  script: "turn" | "kickTurn" = "turn",
): Promise<Turn> {
  const k = ctx.keys;
  const keys = [k.room(p), k.clock(p), k.jobs(p), k.pace(p)];
  const args = [String(Math.max(0, want)), ctx.paceCap, k.jobPrefix(p)];
  return turnOf(ctx, await ctx.run(script, keys, args));
}

/** A turn from TURN's reply. */
export function turnOf(ctx: RedisContext, reply: RedisReply): Turn {
  const [moved, waiting, waitMs, pace] = (reply as RedisReply[]).map(Number);
  return { moved, waiting, waitMs, pace: deploymentPace(ctx, pace) };
}

/** Every partition's pace waits `retryAfterMs` and is cut once (429s within a second count once). */
export async function throttle(ctx: RedisContext, retryAfterMs: number): Promise<void> {
  const args = [String(Math.max(0, Math.ceil(retryAfterMs))), ctx.paceCap];
  const replies = await Promise.allSettled(
    ctx.all.map((p) => ctx.run("throttle", [ctx.keys.pace(p)], args)),
  );
  const failed = replies.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/**
 * After a job was parked in an empty waiting room: asks for a turn once the pace has one, up to three
 * times while the room still waits (claim loops that block for long may not look before then).
 */
export function kick(ctx: RedisContext, p: number, waitMs: number, tries = 3): void {
  if (waitMs < 0 || tries <= 0) return;
  const timer = setTimeout(async () => {
    ctx.timers.delete(timer);
    try {
      const done = await turn(ctx, p, 1, "kickTurn");
      if (done.moved === 0 && done.waiting > 0) kick(ctx, p, Math.max(10, done.waitMs), tries - 1);
    } catch (error) {
      ctx.report("give a waiting job its turn", error);
    }
  }, Math.min(Math.max(0, waitMs), 60_000));
  ctx.timers.add(timer);
}
