/**
 * The owners' keys in a partition migration between one untagged partition and tagged ones (only
 * then do their names change: `P owner:<o>:jobs` and `P{o:<o>}jobs`; never on a Cluster, which is
 * always tagged, so one RENAME each): their job index, active set, rate counter and usage days.
 */
import type { RedisReply } from "../redis/types.ts";
import type { KeyLayout } from "./partitions.ts";
import type { MoveContext } from "./migrate_moves.ts";

const SUFFIX = "(active|jobs|rate|usage:\\d{4}-\\d{2}-\\d{2})";

/** An owner key's owner and kind in `layout`, or null when the key is not one. */
function ownerKeyOf(layout: KeyLayout, key: string): { owner: string; kind: string } | null {
  const rest = key.slice(layout.prefix.length);
  const match = layout.tagged
    ? new RegExp(`^\\{o:(.*)\\}${SUFFIX}$`, "s").exec(rest)
    : new RegExp(`^owner:(.*):${SUFFIX}$`, "s").exec(rest);
  return match ? { owner: match[1], kind: match[2] } : null;
}

/** The same owner key in `layout`. */
function ownerKeyIn(layout: KeyLayout, owner: string, kind: string): string {
  if (kind === "active") return layout.ownerActive(owner);
  if (kind === "jobs") return layout.ownerJobs(owner);
  if (kind === "rate") return layout.ownerRate(owner);
  return layout.ownerUsage(owner, kind.slice("usage:".length));
}

/** Renames one owner key to its name in the new layout (nothing when a run that died moved it). */
async function moveOwnerKey(mc: MoveContext, key: string, target: string): Promise<void> {
  await mc.client.send(["RENAME", key, target]).catch((error: Error) => {
    if (!/no such key/i.test(error.message)) throw error;
  });
}

/** Moves every owner key when the layouts name them differently; returns how many moved. */
export async function moveOwners(mc: MoveContext): Promise<number> {
  if (mc.from.tagged === mc.to.tagged) return 0;
  const pattern = mc.from.tagged ? "{o:*" : "owner:*";
  const prefix = mc.from.prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
  let moved = 0;
  let cursor = "0";
  do {
    const reply = await mc.client.send([
      "SCAN",
      cursor,
      "MATCH",
      `${prefix}${pattern}`,
      "COUNT",
      "200",
    ]) as RedisReply[];
    cursor = String(reply[0]);
    for (const key of (reply[1] as RedisReply[]).map(String)) {
      const found = key.startsWith(mc.from.prefix) ? ownerKeyOf(mc.from, key) : null;
      if (!found) continue;
      await moveOwnerKey(mc, key, ownerKeyIn(mc.to, found.owner, found.kind));
      moved++;
    }
    await mc.step("owners");
  } while (cursor !== "0");
  return moved;
}
