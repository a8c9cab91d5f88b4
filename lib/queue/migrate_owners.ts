/**
 * The owners' keys in a partition migration between one untagged partition and tagged ones (only
 * then do their names change: `P owner:<o>:jobs` and `P{o:<o>}jobs`; never on a Cluster, which is
 * always tagged): their job index, active set, rate counter and usage days, copied by type.
 */
import type { RedisCommand, RedisReply } from "../redis/types.ts";
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

/** The commands that write `value` (as read by `readCommand`) of a key of `type` at `target`. */
function writeCommands(type: string, target: string, value: RedisReply[]): RedisCommand[] {
  if (value.length === 0) return [];
  if (type === "set") return [["SADD", target, ...value.map(String)]];
  if (type === "hash") return [["HSET", target, ...value.map(String)]];
  const pairs: string[] = [];
  for (let i = 0; i < value.length; i += 2) pairs.push(String(value[i + 1]), String(value[i]));
  return [["ZADD", target, ...pairs]];
}

/** The command that reads a key of `type` whole. */
function readCommand(type: string, key: string): RedisCommand | null {
  if (type === "set") return ["SMEMBERS", key];
  if (type === "hash") return ["HGETALL", key];
  if (type === "zset") return ["ZRANGE", key, "0", "-1", "WITHSCORES"];
  if (type === "string") return ["GET", key];
  return null;
}

/** Copies one owner key to its name in the new layout (merging into what is there), then deletes it. */
async function moveOwnerKey(mc: MoveContext, key: string, target: string): Promise<void> {
  const type = String(await mc.client.send(["TYPE", key]));
  const read = readCommand(type, key);
  if (!read) return;
  const [value, ttl] = await Promise.all([mc.client.send(read), mc.client.send(["PTTL", key])]);
  if (value === null || Number(ttl) === -2) return;
  const writes = type === "string"
    ? [["SET", target, String(value)]]
    : writeCommands(type, target, value as RedisReply[]);
  if (Number(ttl) > 0) writes.push(["PEXPIRE", target, String(ttl)]);
  for (const write of writes) await mc.client.send(write);
  await mc.client.send(["DEL", key]);
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
