/**
 * The moves of the partition migration, one per kind of key: each reads the old layout's keys and
 * writes the new layout's, then deletes what it copied. Each is safe to run again after a crash
 * anywhere in it (see scripts_migrate.ts).
 */
import type { RedisArg, RedisClient, RedisReply, Script } from "../redis/types.ts";
import type { KeyLayout } from "./partitions.ts";
import { toDelivery } from "./redis_codec.ts";
import { GROUP } from "./redis_context.ts";
import { MOVE_ENTRIES, PUT_HASH, ROOM_IN, SCAN_SLOT } from "./scripts_migrate.ts";

/** What every move needs: the client, both layouts, the scripts, and a step that renews the lock. */
export interface MoveContext {
  client: RedisClient;
  from: KeyLayout;
  to: KeyLayout;
  scripts: Record<"scan" | "put" | "entries" | "room", Script>;
  /** True on a Redis Cluster: a SCAN is then sent to the node of the slot it looks at. */
  cluster: boolean;
  /** Called between batches: renews the migration's lock (throws when it is lost). */
  step(what: string): Promise<void>;
}

/** The scripts of MoveContext, loaded once. */
export async function moveScripts(
  define: (source: string) => Promise<Script>,
): Promise<MoveContext["scripts"]> {
  const [scan, put, entries, room] = await Promise.all(
    [SCAN_SLOT, PUT_HASH, MOVE_ENTRIES, ROOM_IN].map(define),
  );
  return { scan, put, entries, room };
}

const PAGE = 200;

/** A literal as a SCAN pattern. */
function glob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Throws the error replies of a pipeline. */
function checked(replies: (RedisReply | Error)[]): RedisReply[] {
  for (const reply of replies) if (reply instanceof Error) throw reply;
  return replies as RedisReply[];
}

/** Calls `each` with every page of keys that start with `start` (on a Cluster: in `route`'s slot). */
async function scanKeys(
  mc: MoveContext,
  route: string,
  start: string,
  each: (keys: string[]) => Promise<void>,
): Promise<void> {
  let cursor = "0";
  do {
    const [pattern, count] = [`${glob(start)}*`, String(PAGE)];
    // A plain SCAN elsewhere (over Upstash REST too, where a script need not be allowed to scan).
    const reply =
      (mc.cluster
        ? await mc.client.eval(mc.scripts.scan, [route], [cursor, pattern, count])
        : await mc.client.send(["SCAN", cursor, "MATCH", pattern, "COUNT", count])) as RedisReply[];
    cursor = String(reply[0]);
    const keys = (reply[1] as RedisReply[]).map(String).filter((key) => key.startsWith(start));
    if (keys.length > 0) await each(keys);
    await mc.step("hashes");
  } while (cursor !== "0");
}

/**
 * Moves one page of hashes to `target(key)` (skipping those already there); returns how many. Off a
 * Cluster one RENAME each (atomic, the expiry and the image's bytes kept, whatever the transport); on
 * a Cluster, where the two keys are in different slots, a copy (bytes as bytes over TCP), then DEL.
 */
async function moveHashPage(mc: MoveContext, keys: string[], target: (key: string) => string) {
  const moving = keys.filter((key) => target(key) !== key);
  if (!mc.cluster) {
    await Promise.all(
      moving.map((key) =>
        mc.client.send(["RENAME", key, target(key)]).catch((error: Error) => {
          if (!/no such key/i.test(error.message)) throw error; // moved by a run that died
        })
      ),
    );
    return moving.length;
  }
  await Promise.all(moving.map(async (key) => {
    const [fields, ttl] = await Promise.all([
      mc.client.sendBytes(["HGETALL", key]),
      mc.client.send(["PTTL", key]),
    ]);
    if (!Array.isArray(fields) || fields.length === 0 || Number(ttl) === -2) return;
    const args = [String(Math.max(0, Number(ttl))), ...fields as RedisArg[]];
    await mc.client.eval(mc.scripts.put, [target(key)], args);
  }));
  // Only once every copy is written: a crash before this leaves both, and the copy runs again.
  await mc.step("hashes copied");
  if (moving.length > 0) await mc.client.send(["DEL", ...moving]);
  return moving.length;
}

/** Moves every job hash and references hash to its partition in the new layout. */
export async function moveHashes(mc: MoveContext): Promise<number> {
  let moved = 0;
  for (let p = 0; p < mc.from.partitions; p++) {
    const route = mc.from.jobs(p);
    for (const [kind, target] of hashKinds(mc)) {
      const start = `${mc.from.prefix}${mc.from.tag(p)}${kind}:`;
      await scanKeys(mc, route, start, async (keys) => {
        moved += await moveHashPage(mc, keys, (key) => target(key.slice(start.length)));
      });
    }
  }
  return moved;
}

function hashKinds(mc: MoveContext): [string, (id: string) => string][] {
  return [["job", (id) => mc.to.job(id)], ["refs", (id) => mc.to.refs(id)]];
}

/** The set where a new partition remembers the old entries it took. */
export function movedMarks(layout: KeyLayout, p: number): string {
  return `${layout.prefix}${layout.tag(p)}migrated`;
}

/** Moves every entry of the old jobs streams (queued, and running ones) to its new partition's stream. */
export async function moveEntries(mc: MoveContext): Promise<number> {
  let moved = 0;
  for (let p = 0; p < mc.from.partitions; p++) {
    const stream = mc.from.jobs(p);
    let start = "-";
    while (true) {
      const page = await mc.client.send(["XRANGE", stream, start, "+", "COUNT", String(PAGE)]);
      if (!Array.isArray(page) || page.length === 0) break;
      start = `(${String((page[page.length - 1] as RedisReply[])[0])}`;
      const byPartition = new Map<number, { args: RedisArg[]; jobs: string[] }>();
      const taken: string[] = [];
      for (const entry of page) {
        const [entryId, raw] = entry as [string, RedisReply[]];
        const jobId = toDelivery(entry, "").jobId;
        const q = mc.to.partitionOf(jobId);
        if (mc.to.jobs(q) === stream) continue; // already in its partition's stream
        const batch = byPartition.get(q) ?? { args: [], jobs: [] };
        const fields = (raw ?? []).map(String);
        batch.args.push(`${stream} ${entryId}`, entryId, String(fields.length), ...fields);
        batch.jobs.push(mc.to.job(jobId));
        byPartition.set(q, batch);
        taken.push(entryId);
      }
      await Promise.all([...byPartition].map(([q, { args, jobs }]) => {
        const keys = [mc.to.jobs(q), movedMarks(mc.to, q), ...jobs];
        return mc.client.eval(mc.scripts.entries, keys, args);
      }));
      await mc.step("entries copied"); // a crash here: run again, the marks skip the copies
      if (taken.length > 0) {
        checked(
          await mc.client.pipeline([
            ["XACK", stream, GROUP, ...taken],
            ["XDEL", stream, ...taken],
          ]),
        );
      }
      moved += taken.length;
      await mc.step("entries");
    }
  }
  return moved;
}

/**
 * Moves the members of one kind of per-partition sorted set (`key(p)`) to the set of their job's
 * new partition, keeping their scores; `idOf` reads a member's job id.
 */
export async function moveSorted(
  mc: MoveContext,
  key: (layout: KeyLayout, p: number) => string,
  idOf: (member: string) => string,
): Promise<number> {
  let moved = 0;
  for (let p = 0; p < mc.from.partitions; p++) {
    const old = key(mc.from, p);
    let stay = 0;
    while (true) {
      const page = await mc.client.send([
        "ZRANGE",
        old,
        String(stay),
        String(stay + PAGE - 1),
        "WITHSCORES",
      ]) as RedisReply[];
      if (page.length === 0) break;
      const adds: string[][] = [];
      const taken: string[] = [];
      for (let i = 0; i < page.length; i += 2) {
        const member = String(page[i]);
        const target = key(mc.to, mc.to.partitionOf(idOf(member)));
        if (target === old) stay++;
        else {
          adds.push(["ZADD", target, String(page[i + 1]), member]);
          taken.push(member);
        }
      }
      checked(await Promise.all(adds.map((add) => mc.client.send(add).catch((e: Error) => e))));
      if (taken.length > 0) await mc.client.send(["ZREM", old, ...taken]);
      moved += taken.length;
      await mc.step("sorted sets");
    }
  }
  return moved;
}

/** Moves the jobs parked in the old waiting rooms to their new partitions' rooms, in the same order. */
export async function moveRooms(mc: MoveContext): Promise<number> {
  let moved = 0;
  for (let p = 0; p < mc.from.partitions; p++) {
    const room = mc.from.room(p);
    const clock = Number(await mc.client.send(["HGET", mc.from.clock(p), "_v"]) ?? 0) || 0;
    let stay = 0;
    while (true) {
      const end = String(stay + PAGE - 1);
      const page = await mc.client.send(["ZRANGE", room, String(stay), end, "WITHSCORES"]);
      if (!Array.isArray(page) || page.length === 0) break;
      const byPartition = new Map<number, string[]>();
      const taken: string[] = [];
      for (let i = 0; i < page.length; i += 2) {
        const member = String(page[i]);
        const q = mc.to.partitionOf(member.split(" ")[0]);
        if (mc.to.room(q) === room) {
          stay++;
          continue;
        }
        const args = byPartition.get(q) ?? [];
        args.push(member, String(Number(page[i + 1]) - clock));
        byPartition.set(q, args);
        taken.push(member);
      }
      await Promise.all(
        [...byPartition].map(([q, args]) =>
          mc.client.eval(mc.scripts.room, [mc.to.room(q), mc.to.clock(q)], args)
        ),
      );
      if (taken.length > 0) await mc.client.send(["ZREM", room, ...taken]);
      moved += taken.length;
      await mc.step("waiting rooms");
    }
  }
  return moved;
}
