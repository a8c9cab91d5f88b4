/** The worker's side of the Redis broker: claims, fenced leases, terminal writes and group upkeep. */
import { type NotificationBody, PROCESSING_ERROR } from "../live/notifications.ts";
import type { RedisReply } from "../redis/types.ts";
import { BlockingReader } from "./blocking_reader.ts";
import { notification, toDelivery, toRecord } from "./redis_codec.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import type { BlockOptions, Delivery, JobRecord, LeaseStatus, Outcome } from "./types.ts";

/** What a terminal write carries besides the notification. */
export interface EndExtra {
  image?: string;
  mime?: string;
  revised?: string;
  /** The dead-letter reason ('' or absent: no dead letter). */
  dead?: string;
  /** Only when the job's status is one of these (space-separated). */
  onlyIf?: string;
}

/** What the FINISH script answers when the delivery's consumer no longer holds the entry. */
export const LEASE_LOST = -2;

/** Claims, leases and terminal writes of the Redis broker; every call survives a lost group. */
export class RedisWorkerOps {
  #ctx: RedisContext;
  #claims: BlockingReader;
  /** Where the next reclaim resumes its scan of the pending entries (XAUTOCLAIM's cursor). */
  #reclaimCursor = "0-0";

  constructor(ctx: RedisContext) {
    this.#ctx = ctx;
    this.#claims = new BlockingReader(ctx.client);
  }

  /** Takes up to `count` new entries for `consumer`, waiting up to `blockMs`. */
  async claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    const reply = await this.#ctx.grouped(() =>
      this.#claims.read(
        ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", String(count)],
        ["STREAMS", this.#ctx.key("jobs"), ">"],
        options,
      )
    );
    if (!Array.isArray(reply) || reply.length === 0) return [];
    const [, entries] = reply[0] as [string, RedisReply[]];
    return entries.map((entry) => toDelivery(entry, consumer));
  }

  /** Takes over idle entries, resuming where the previous call's scan stopped. */
  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    const jobs = this.#ctx.key("jobs");
    const reply = await this.#ctx.grouped(() =>
      this.#ctx.client.send([
        "XAUTOCLAIM",
        jobs,
        GROUP,
        consumer,
        String(idleMs),
        this.#reclaimCursor,
        "COUNT",
        String(count),
      ])
    ) as RedisReply[];
    this.#reclaimCursor = String(reply[0]);
    const entries = (reply[1] as RedisReply[]).filter((e) => Array.isArray(e) && e[1] !== null);
    if (entries.length === 0) return [];
    const ids = entries.map((entry) => String((entry as RedisReply[])[0]));
    const pending = await this.#ctx.client.pipeline(
      ids.map((id) => ["XPENDING", jobs, GROUP, id, id, "1"]),
    );
    return entries.map((entry, i) => {
      const row = pending[i];
      if (row instanceof Error) throw row;
      const found = Array.isArray(row) && Array.isArray(row[0]) ? Number(row[0][3]) : NaN;
      return toDelivery(entry, consumer, Number.isFinite(found) ? found : 2);
    });
  }

  /** Renews the leases `consumer` still holds; "lost" for the others, null for a gone job. */
  async renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]> {
    if (deliveries.length === 0) return [];
    const keys = [this.#ctx.key("jobs"), ...deliveries.map((d) => this.#ctx.job(d.jobId))];
    const args = [GROUP, consumer, ...deliveries.map((d) => d.entryId)];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("renew", keys, args));
    return (reply as RedisReply[]).map((status) =>
      status === null ? null : String(status)
    ) as LeaseStatus[];
  }

  /** Removes consumers idle for `idleMs` with nothing pending; returns how many went. */
  async pruneConsumers(idleMs: number): Promise<number> {
    const keys = [this.#ctx.key("jobs")];
    const args = [GROUP, String(Math.max(0, Math.floor(idleMs)))];
    return await this.#ctx.grouped(() => this.#ctx.run("prune", keys, args)) as number;
  }

  /**
   * Marks the job running for this entry and counts the attempt; null when there is nothing to run
   * (the lease is lost, the job ended or is gone, or another entry runs it).
   */
  async start(delivery: Delivery): Promise<JobRecord | null> {
    const { jobId, entryId, consumer } = delivery;
    const started = notification(jobId, { type: "started", success: true });
    const keys = [this.#ctx.job(jobId), this.#ctx.key("events"), this.#ctx.key("jobs")];
    const args = [new Date().toISOString(), started, this.#ctx.feedMax, jobId, entryId, GROUP];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("start", keys, [...args, consumer]));
    return Array.isArray(reply) ? toRecord(jobId, reply) : null;
  }

  /** Runs the FINISH script; returns its answer (seq, 0 ended, -1 gone, LEASE_LOST). */
  async end(delivery: Delivery, body: NotificationBody, extra: EndExtra = {}): Promise<number> {
    const { jobId, entryId, consumer } = delivery;
    const keys = ["job:" + jobId, "events", "jobs", "jobs:dead"];
    const args = [
      entryId,
      GROUP,
      body.type,
      notification(jobId, body),
      new Date().toISOString(),
      this.#ctx.ttl,
      this.#ctx.feedMax,
      jobId,
      "error" in body ? body.error : "",
      extra.mime ?? "",
      extra.revised ?? "",
      extra.image ?? "",
      extra.dead ?? "",
      extra.onlyIf ?? "",
      entryId === "" ? "" : consumer,
    ];
    const full = keys.map((k) => this.#ctx.key(k));
    return await this.#ctx.grouped(() => this.#ctx.run("finish", full, args)) as number;
  }

  /** Stores the outcome once; false when the job had ended or the lease is lost. */
  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    if (outcome.type === "failed") {
      const body = { type: "failed" as const, success: false as const, error: outcome.error };
      return await this.end(delivery, body) > 0;
    }
    const body = {
      type: "succeeded" as const,
      success: true as const,
      data: { image: "", mime_type: outcome.mimeType, revised_prompt: outcome.revisedPrompt },
    };
    const { image, mimeType: mime, revisedPrompt: revised } = outcome;
    return await this.end(delivery, body, { image, mime, revised }) > 0;
  }

  /** Fails the job, keeps `reason` in the dead-letter stream only, and acknowledges. */
  async deadLetter(delivery: Delivery, reason: string): Promise<void> {
    const body = { type: "failed" as const, success: false as const, error: PROCESSING_ERROR };
    await this.end(delivery, body, { dead: reason || "unknown" });
  }

  /** Acknowledges and deletes an entry without touching its job, unless the lease is lost. */
  async ack(delivery: Delivery): Promise<void> {
    const args = [delivery.entryId, GROUP, delivery.consumer];
    await this.#ctx.grouped(() => this.#ctx.run("ack", [this.#ctx.key("jobs")], args));
  }

  /** Requeues a running job after `delayMs`; false when it no longer runs or the lease is lost. */
  async retryLater(delivery: Delivery, delayMs: number): Promise<boolean> {
    const keys = ["job:" + delivery.jobId, "jobs", "jobs:delayed"].map((k) => this.#ctx.key(k));
    const args = [
      delivery.entryId,
      GROUP,
      String(Date.now() + Math.max(0, delayMs)),
      new Date().toISOString(),
      delivery.jobId,
      delivery.consumer,
    ];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("retry", keys, args));
    return reply === 1;
  }

  /** Moves due delayed jobs back to the stream; returns how many moved. */
  async promoteDue(now: number): Promise<number> {
    const keys = [this.#ctx.key("jobs:delayed"), this.#ctx.key("jobs")];
    const args = [String(now), "500", this.#ctx.job("")];
    return await this.#ctx.run("promote", keys, args) as number;
  }

  /** Closes the claim loop's dedicated connection. */
  close(): Promise<void> {
    return this.#claims.close();
  }
}
