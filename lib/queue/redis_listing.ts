/**
 * Reads of the Redis broker for clients rather than workers: an owner's jobs, newest first, from the
 * owner's index (a sorted set of ids scored by creation time), and a queued job's place in line.
 */
import { type RedisReply, replyText } from "../redis/types.ts";
import { compareEventIds } from "../live/notifications.ts";
import { toRecord } from "./redis_codec.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import { RECORD_FIELDS } from "./scripts.ts";
import type { JobPage, JobRecord, ListOptions } from "./types.ts";

/** Index entries read per round trip, and at most per page (so a page with a rare status stays cheap). */
const BATCH = 100;
const MAX_SCAN = 1_000;
/** Entries counted ahead of a queued job at most (a longer line reads as this many). */
const MAX_AHEAD = 1_000;
const PAGE_CURSOR = /^(\d{1,16}):(.{1,128})$/;

/**
 * The owner's jobs, newest first. A page cursor is "<score>:<id>" of the last job returned; jobs made
 * later score higher, so they never shift later pages (no item twice, none skipped). Entries of jobs
 * that expired are dropped from the index as they are met.
 */
export async function listJobs(
  ctx: RedisContext,
  owner: string,
  { limit, status, cursor }: ListOptions,
): Promise<JobPage> {
  const key = ctx.keys.ownerJobs(owner);
  let after: { score: number; id: string } | null = null;
  if (cursor !== undefined) {
    const m = PAGE_CURSOR.exec(cursor);
    if (!m) throw new RangeError("Cannot list jobs: the cursor is not a page cursor");
    after = { score: Number(m[1]), id: m[2] };
  }
  const jobs: JobRecord[] = [];
  let last: { score: number; id: string } | null = after;
  let scanned = 0;
  let max = after ? String(after.score) : "+inf";
  while (scanned < MAX_SCAN) {
    const reply = await ctx.client.send([
      "ZRANGE",
      key,
      max,
      "-inf",
      "BYSCORE",
      "REV",
      "LIMIT",
      "0",
      String(BATCH),
      "WITHSCORES",
    ]) as RedisReply[];
    const entries: { id: string; score: number }[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = String(reply[i]);
      const score = Number(reply[i + 1]);
      // Equal scores come in reverse id order: those at or above the cursor's id were on a page already.
      if (after && score === after.score && id >= after.id) continue;
      entries.push({ id, score });
    }
    if (entries.length === 0) return { jobs, next: null };
    scanned += entries.length;
    const values = await ctx.spread(
      entries.map(({ id }) => ["HMGET", ctx.job(id), ...RECORD_FIELDS]),
    );
    const gone: string[] = [];
    for (const [i, entry] of entries.entries()) {
      const row = values[i];
      if (row instanceof Error) throw row;
      if ((row as RedisReply[])[1] === null) {
        gone.push(entry.id);
        continue;
      }
      const record = toRecord(entry.id, row as RedisReply[]);
      if (record.owner !== owner) {
        gone.push(entry.id);
        continue;
      }
      if (status !== undefined && record.status !== status) {
        last = entry;
        continue;
      }
      if (jobs.length === limit) return { jobs, next: cursorOf(last!) };
      jobs.push(record);
      last = entry;
    }
    if (gone.length > 0) await ctx.client.send(["ZREM", key, ...gone]);
    const tail = entries.at(-1)!;
    after = tail;
    max = String(tail.score);
    if (reply.length < BATCH * 2) return { jobs, next: null };
  }
  return { jobs, next: last ? cursorOf(last) : null };
}

function cursorOf({ score, id }: { score: number; id: string }): string {
  return `${score}:${id}`;
}

/**
 * Jobs ahead of a queued one: the entries of its partition's stream between the group's last
 * delivered entry and the job's own (at most MAX_AHEAD counted), times the partitions (each is worked
 * in parallel, so the estimate counts the line a job waits in overall). A job waiting out a retry
 * backoff has no entry yet: it counts the whole line of its partition.
 */
export async function queuePosition(ctx: RedisContext, id: string): Promise<number | null> {
  const p = ctx.keys.partitionOf(id);
  const stream = ctx.keys.jobs(p);
  // One round trip for both reads (the job and its stream share the partition's slot).
  const [fields, info] = await ctx.client.pipeline([
    ["HMGET", ctx.job(id), "status", "qe", "owner"],
    ["XINFO", "GROUPS", stream],
  ]);
  if (fields instanceof Error) throw fields;
  const [status, entry, owner] = fields as RedisReply[];
  if (status !== "queued") return null;
  // No stream yet (an emptied Redis): nothing was delivered. Any other error is reported.
  if (info instanceof Error && !/no such key/i.test(info.message)) throw info;
  const groups = info instanceof Error ? [] : info as RedisReply[];
  let delivered = "0-0";
  for (const row of groups) {
    const g = row as RedisReply[];
    const fields = new Map<string, RedisReply>();
    for (let i = 0; i + 1 < g.length; i += 2) fields.set(String(g[i]), g[i + 1]);
    if (fields.get("name") === GROUP) delivered = String(fields.get("last-delivered-id") ?? "0-0");
  }
  const own = entry ? String(entry) : "";
  if (own !== "" && compareEventIds(own, delivered) <= 0) return 0;
  const end = own === "" ? "+" : `(${own}`;
  // Ahead of a job in the waiting room: the entries waiting for a worker, and the jobs the fair
  // order puts first in its room (its rank); a job waiting out a retry has the whole line ahead.
  const [ahead, rank, waiting] = await ctx.client.pipeline([
    ["XRANGE", stream, `(${delivered}`, end, "COUNT", String(MAX_AHEAD)],
    ["ZRANK", ctx.keys.room(p), `${id} ${replyText(owner)}`],
    ["ZCARD", ctx.keys.room(p)],
  ]);
  for (const reply of [ahead, rank, waiting]) if (reply instanceof Error) throw reply;
  const inStream = (ahead as RedisReply[]).length;
  const inRoom = own !== "" ? 0 : rank === null ? Number(waiting) : Number(rank);
  return Math.min(inStream + inRoom, MAX_AHEAD) * ctx.partitions;
}
