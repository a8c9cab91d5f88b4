/**
 * Submits on the Redis broker: one atomic CREATE with one partition; with N > 1 the owner's limits are
 * checked in their own step on the owner's tag first (see OWNER), then CREATE runs in the job's partition.
 */
import type { RedisReply } from "../redis/types.ts";
import { jobParams, toRecord } from "./redis_codec.ts";
import { RECORD_FIELDS } from "./scripts.ts";
import { INDEX_MAX } from "./scripts_submit.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import { kick } from "./redis_turns.ts";
import { secondsToDayEnd, utcDay } from "../pace/usage.ts";
import type { JobRecord, LocalJob, NewJob, SubmitLimits, SubmitResult } from "./types.ts";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The record a new job gets, as CREATE writes it. */
function fresh(job: NewJob, now: string): JobRecord {
  const { references, ...rest } = job;
  const given = Object.entries(rest).filter(([, value]) => value !== undefined);
  return {
    ...Object.fromEntries(given) as Omit<NewJob, "references">,
    ...(references?.length ? { referenceCount: references.length } : {}),
    status: "queued",
    createdAt: now,
    updatedAt: now,
    attempts: 0,
  };
}

/** The ids among `ids` whose jobs ended or are gone: one read of their statuses. */
async function endedOf(ctx: RedisContext, ids: string[]): Promise<string[]> {
  const replies = await ctx.spread(ids.map((id) => ["HGET", ctx.job(id), "status"]));
  return ids.filter((_, i) => {
    const status = replies[i];
    if (status instanceof Error) throw status;
    return status === null || TERMINAL.has(String(status));
  });
}

/**
 * Runs a script that may answer {-4, active ids} (the owner is at the cap on a first pass): reads
 * those jobs, and when some ended, runs it once more with their ids to drop (a second pass, where the
 * rate is not counted again). Every key a script touches is passed in KEYS, so the pruning is here.
 */
async function withPruning(
  pass: (second: boolean, ended: string[]) => Promise<RedisReply[]>,
  ctx: RedisContext,
): Promise<RedisReply[]> {
  const reply = await pass(false, []);
  if (reply[0] !== -4) return reply;
  const ended = await endedOf(ctx, (reply[1] as RedisReply[]).map(String));
  return ended.length === 0 ? [-1] : await pass(true, ended);
}

/** Turns a refusal code into a result, or null when the code is not a refusal. */
function refusal(reply: RedisReply[], record: JobRecord): SubmitResult | null {
  if (reply[0] === -3) {
    const retryAfterSec = Math.max(1, Number(reply[1]));
    return { created: false, job: record, refused: "rate_limited", retryAfterSec };
  }
  if (reply[0] === -1) return { created: false, job: record, refused: "owner_busy" };
  if (reply[0] === -2) return { created: false, job: record, refused: "backlog" };
  if (reply[0] === -5) {
    const retryAfterSec = Math.max(1, Number(reply[1]));
    return { created: false, job: record, refused: "quota_exceeded", retryAfterSec };
  }
  return null;
}

/**
 * Creates the job unless its id exists or a limit refuses it; with `enqueue`, also enqueues it. With
 * `announce`, first tells it about the job (its queued event, and then whether it got created).
 */
export async function createJob(
  ctx: RedisContext,
  job: NewJob,
  enqueue: boolean,
  limits: SubmitLimits = {},
  announce?: (job: LocalJob) => void,
): Promise<SubmitResult> {
  const now = new Date().toISOString();
  const notification = { id: job.id, type: "queued" as const, success: true as const, at: now };
  // The first event's id is the submit's time in ms, as CREATE writes it (see scripts.ts).
  const queued = {
    eventId: String(Date.parse(now)),
    notification,
    json: JSON.stringify(notification),
  };
  if (!announce) return await submit(ctx, job, enqueue, limits, now, queued.json);
  const created = Promise.withResolvers<boolean>();
  announce({ id: job.id, owner: job.owner, queued, created: created.promise });
  try {
    const result = await submit(ctx, job, enqueue, limits, now, queued.json);
    created.resolve(result.created);
    return result;
  } catch (error) {
    created.resolve(false);
    throw error;
  }
}

async function submit(
  ctx: RedisContext,
  job: NewJob,
  enqueue: boolean,
  limits: SubmitLimits,
  now: string,
  queuedJson: string,
): Promise<SubmitResult> {
  const record = fresh(job, now);
  const p = ctx.keys.partitionOf(job.id);
  const rate = limits.ratePerMinute ?? 0;
  const maxActive = limits.maxActivePerOwner ?? 0;
  // The backlog cap is per partition with N > 1 (checked atomically with the XADD), so the partitions
  // together hold about maxQueued entries, never more than maxQueued + N - 1.
  const maxQueued = Math.ceil((limits.maxQueued ?? 0) / ctx.partitions);
  const quota = enqueue ? limits.maxImagesPerDay ?? 0 : 0;
  const images = limits.images ?? job.n ?? 1;
  const single = !ctx.keys.tagged;
  const owned = single && (rate > 0 || maxActive > 0 || quota > 0);
  const k = ctx.keys;
  const usageKey = k.ownerUsage(job.owner, utcDay(now));
  const keys = [
    ctx.job(job.id),
    k.jobs(p),
    k.events(p),
    k.webhooks(p),
    k.room(p),
    k.clock(p),
    k.pace(p),
  ];
  // One partition: the owner's index (and limits) in the same script; else in their own steps.
  if (single) keys.push(k.ownerJobs(job.owner));
  if (owned) keys.push(k.ownerActive(job.owner), k.ownerRate(job.owner), usageKey);
  // The references hash, last: CREATE writes it only with references.
  if (job.references?.length) keys.push(k.refs(job.id));
  const nowMs = String(Date.parse(now));
  const dayEnd = String(secondsToDayEnd(Date.parse(now)));
  const indexTtl = ctx.indexRefresh(job.owner) ? String(indexTtlSec(ctx)) : "0";
  const create = (second: boolean, ended: string[]) =>
    ctx.run("create", keys, [
      job.id,
      job.owner,
      job.prompt,
      job.model ?? "",
      job.aspectRatio ?? "",
      now,
      ctx.ttl,
      queuedJson,
      enqueue ? "1" : "0",
      String(owned ? maxActive : 0),
      String(enqueue ? maxQueued : 0),
      second ? "1" : "0",
      String(owned ? rate : 0),
      ctx.feedFloor,
      nowMs,
      job.webhook ?? "",
      job.webhook ? (job.webhookEvents ?? []).join(" ") : "",
      indexTtl,
      limits.freshId ? "1" : "0",
      ctx.paceCap,
      GROUP,
      String(quota),
      String(images),
      dayEnd,
      String(Date.parse(now) - indexTtlSec(ctx) * 1000),
      ...jobParams(job),
      ...ended,
    ]) as Promise<RedisReply[]>;

  let added = false;
  let reserved = 0;
  if (!single && (rate > 0 || maxActive > 0 || quota > 0)) {
    // The owner's step, before CREATE: another slot, so not atomic with it. Racing submits of one
    // owner may each pass the cap between a reservation and its CREATE (the cap may be off by those
    // few), and a CREATE refused after the rate was counted (backlog) still counts.
    const ownerKeys = [k.ownerActive(job.owner), k.ownerRate(job.owner), usageKey];
    const reply = await withPruning(
      (second, ended) =>
        ctx.run("owner", ownerKeys, [
          job.id,
          String(rate),
          String(maxActive),
          ctx.ttl,
          second ? "1" : "0",
          String(quota),
          String(images),
          dayEnd,
          ...ended,
        ]) as Promise<RedisReply[]>,
      ctx,
    );
    const refused = refusal(reply, record);
    if (refused) {
      // Idempotency comes first: a replay of an existing id is answered with its job.
      const values = await ctx.client.send(["HMGET", ctx.job(job.id), ...RECORD_FIELDS]);
      const found = (values as RedisReply[])[1] !== null;
      return found ? { created: false, job: toRecord(job.id, values as RedisReply[]) } : refused;
    }
    added = reply[1] === 1;
    reserved = Number(reply[2] ?? 0);
    const reply2 = await create(false, []);
    if (reply2[0] === 1) {
      kick(ctx, p, Number(reply2[1]));
      await indexJob(ctx, job, nowMs, indexTtl);
      return { created: true, job: record };
    }
    // Not created: give back what the owner's step took (a replay is not counted, a refusal is).
    const uncount = reply2[0] === 0 && rate > 0;
    if (added || uncount || reserved > 0) {
      const args = [job.id, added ? "1" : "0", uncount ? "1" : "0", String(reserved)];
      await ctx.run("release", ownerKeys, args);
    }
    if (reply2[0] === 0) {
      return { created: false, job: toRecord(job.id, reply2[1] as RedisReply[]) };
    }
    return refusal(reply2, record)!;
  }
  const reply = owned ? await withPruning(create, ctx) : await create(false, []);
  if (reply[0] === 0) return { created: false, job: toRecord(job.id, reply[1] as RedisReply[]) };
  const refused = refusal(reply, record);
  if (refused) return refused;
  kick(ctx, p, Number(reply[1] ?? -1));
  if (!single) await indexJob(ctx, job, nowMs, indexTtl);
  return { created: true, job: record };
}

/** How long an owner's job index outlives its newest submit: the jobs' time to live, plus a day. */
function indexTtlSec(ctx: RedisContext): number {
  return Number(ctx.ttl) + 86_400;
}

/**
 * With N > 1 the owner's index is on the owner's tag, so it is written in its own step after CREATE:
 * a process that dies between the two leaves a job out of its owner's listing (it still runs, and
 * GET /v1/jobs/:id still finds it). A failure here is reported, never swallowed.
 */
async function indexJob(ctx: RedisContext, job: NewJob, nowMs: string, ttl: string) {
  const key = ctx.keys.ownerJobs(job.owner);
  const commands = [["ZADD", key, nowMs, job.id]];
  if (ttl !== "0") {
    // Renewed at most once a minute: then trimmed of the ids that expired, and to its newest ones.
    const oldest = String(Number(nowMs) - Number(ttl) * 1000);
    commands.push(
      ["EXPIRE", key, ttl],
      ["ZREMRANGEBYSCORE", key, "-inf", `(${oldest}`],
      ["ZREMRANGEBYRANK", key, "0", String(-(INDEX_MAX + 1))],
    );
  }
  const replies = await ctx.client.pipeline(commands);
  for (const reply of replies) if (reply instanceof Error) throw reply;
}
