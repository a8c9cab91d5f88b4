/** The worker's side of the Redis broker: claims, fenced leases, terminal writes and group upkeep. */
import { PermanentError } from "../errors.ts";
import { imageLinks, type NotificationBody, PROCESSING_ERROR } from "../live/notifications.ts";
import type { RedisArg, RedisReply } from "../redis/types.ts";
import { ClaimOps } from "./redis_claims.ts";
import {
  IMAGE_BASE64,
  IMAGE_BYTES,
  imageFields,
  notification,
  objectFields,
  toRecord,
} from "./redis_codec.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import { usageBody } from "../pace/usage.ts";
import { recordUsage } from "./redis_usage.ts";
import type { BlockOptions, Delivery, JobRecord, LeaseStatus, Outcome, Usage } from "./types.ts";

/** What a terminal write carries besides the notification. */
export interface EndExtra {
  /** The image's bytes (sent raw where the transport is binary, else as base64 text). */
  image?: Uint8Array;
  mime?: string;
  revised?: string;
  /** The dead-letter reason ('' or absent: no dead letter). */
  dead?: string;
  /** Only when the job's status is one of these (space-separated). */
  onlyIf?: string;
  /** What the provider charged. */
  usage?: Usage;
  /** More field-value pairs to write (the images after the first, an error code). */
  fields?: RedisArg[];
}

/** What the FINISH script answers when an image is over the Redis-side cap (nothing written). */
const IMAGE_OVER_CAP = -3;

/** What the FINISH script answers when the delivery's consumer no longer holds the entry. */
export const LEASE_LOST = -2;

/** Claims, leases and terminal writes of the Redis broker; every call survives a lost group. */
export class RedisWorkerOps {
  #ctx: RedisContext;
  #claims: ClaimOps;

  constructor(ctx: RedisContext, blocking: boolean) {
    this.#ctx = ctx;
    this.#claims = new ClaimOps(ctx, blocking);
  }

  /**
   * The partition of a delivery: the one whose stream it was read from, else (a cancel, which has no
   * entry) the job id's.
   */
  #partition(delivery: Delivery): number {
    return delivery.partition ?? this.#ctx.keys.partitionOf(delivery.jobId);
  }

  /** Takes up to `count` new entries for `consumer` (of one partition, or of all), waiting up to `blockMs`. */
  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    return this.#claims.claim(consumer, count, options);
  }

  /** The deployment's pace as the last claim's turn saw it (null: unpaced). */
  get pace(): number | null {
    return this.#claims.pace;
  }

  /** Jobs left in the waiting rooms as the last claim's turn saw them. */
  get waiting(): number {
    return this.#claims.waiting;
  }

  /** Takes over idle entries of every partition, resuming where the previous scans stopped. */
  reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    return this.#claims.reclaim(consumer, idleMs, count);
  }

  /** Renews the leases `consumer` still holds; "lost" for the others, null for a gone job. */
  async renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]> {
    if (deliveries.length === 0) return [];
    const out: LeaseStatus[] = new Array(deliveries.length);
    const byPartition = new Map<number, number[]>();
    deliveries.forEach((d, i) => {
      const p = this.#partition(d);
      byPartition.set(p, [...byPartition.get(p) ?? [], i]);
    });
    // One RENEW per partition (its stream and its jobs share a slot), all in one round trip; a
    // partition that cannot answer leaves its leases "unknown" (kept as they are) and holds no other.
    out.fill("unknown");
    await this.#ctx.perPartition("renew the leases", [...byPartition.keys()], async (p) => {
      const indexes = byPartition.get(p)!;
      const mine = indexes.map((i) => deliveries[i]);
      const keys = [this.#ctx.keys.jobs(p), ...mine.map((d) => this.#ctx.job(d.jobId))];
      const args = [GROUP, consumer, ...mine.map((d) => d.entryId)];
      const reply = await this.#ctx.grouped(() => this.#ctx.run("renew", keys, args));
      (reply as RedisReply[]).forEach((status, k) => {
        out[indexes[k]] = (status === null ? null : String(status)) as LeaseStatus;
      });
    });
    return out;
  }

  /** Removes consumers idle for `idleMs` with nothing pending, from every stream; returns how many went. */
  async pruneConsumers(idleMs: number): Promise<number> {
    const streams = this.#ctx.all.map((p) => this.#ctx.keys.jobs(p));
    if (this.#ctx.keys.tagged) streams.push(this.#ctx.keys.intake);
    const args = [GROUP, String(Math.max(0, Math.floor(idleMs)))];
    const removed = await this.#ctx.perPartition(
      "prune the consumers",
      streams.map((_, i) => i),
      (i) => this.#ctx.grouped(() => this.#ctx.run("prune", [streams[i]], args)),
    );
    return removed.reduce((sum: number, n) => sum + Number(n ?? 0), 0);
  }

  /**
   * Marks the job running for this entry and counts the attempt; null when there is nothing to run
   * (the lease is lost, the job ended or is gone, or another entry runs it).
   */
  async start(delivery: Delivery): Promise<JobRecord | null> {
    const { jobId, entryId, consumer } = delivery;
    const started = notification(jobId, { type: "started", success: true });
    const p = this.#partition(delivery);
    const k = this.#ctx.keys;
    const keys = [this.#ctx.job(jobId), k.events(p), k.jobs(p), k.webhooks(p)];
    const now = new Date();
    const args = [now.toISOString(), started, this.#ctx.feedFloor, jobId, entryId, GROUP, consumer];
    const reply = await this.#ctx.grouped(() =>
      this.#ctx.run("start", keys, [...args, String(now.getTime())])
    );
    return Array.isArray(reply) ? toRecord(jobId, reply) : null;
  }

  /** Runs the FINISH script; returns its answer (seq, 0 ended, -1 gone, LEASE_LOST). */
  async end(delivery: Delivery, body: NotificationBody, extra: EndExtra = {}): Promise<number> {
    const { jobId, entryId, consumer } = delivery;
    const { keys: k } = this.#ctx;
    const p = this.#partition(delivery);
    const keys = [
      k.job(jobId),
      k.events(p),
      k.jobs(p),
      k.dead(p),
      k.webhooks(p),
      k.room(p),
      k.refs(jobId),
    ];
    if (this.#ctx.notices) keys.push(k.notices(p));
    const args = [
      entryId,
      GROUP,
      body.type,
      notification(jobId, body),
      new Date().toISOString(),
      this.#ctx.ttl,
      this.#ctx.feedFloor,
      jobId,
      "error" in body ? body.error : "",
      extra.mime ?? "",
      extra.revised ?? "",
      this.#imageArg(extra.image),
      extra.dead ?? "",
      extra.onlyIf ?? "",
      entryId === "" ? "" : consumer,
      this.#ctx.client.binary ? IMAGE_BYTES : IMAGE_BASE64,
      String(Date.now()),
      extra.usage ? String(extra.usage.images) : "",
      extra.usage ? String(extra.usage.costUsdTicks) : "",
      String(this.#imageCap()),
      ...extra.fields ?? [],
    ];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("finish", keys, args));
    if (reply === IMAGE_OVER_CAP) {
      throw new PermanentError(
        `Cannot store the image of job ${jobId}: it is over the store's cap`,
      );
    }
    if (!Array.isArray(reply)) return Number(reply);
    const [seq, owner, created, asked, again] = reply.map(String);
    // Run twice (a resend): done, and the owner's day was counted by the first run.
    if (again === "1") return Number(seq);
    // The owner's day: counted once, right after the one write that ended the job.
    await recordUsage(this.#ctx, { owner, created, asked, type: body.type, usage: extra.usage })
      .catch((error) => this.#ctx.report(`count the usage of job ${jobId}`, error));
    return Number(seq);
  }

  /** The most bytes one stored image may have, as FINISH sees it (base64 text is 4/3 longer). */
  #imageCap(): number {
    const max = this.#ctx.maxImageBytes;
    if (!(max > 0)) return 0;
    return this.#ctx.client.binary ? max : Math.ceil(max / 3) * 4;
  }

  /** The image as FINISH takes it: raw bytes where the transport is binary, else base64 text. */
  #imageArg(image: Uint8Array | undefined): RedisArg {
    if (!image || image.byteLength === 0) return "";
    return this.#ctx.client.binary ? image : image.toBase64();
  }

  /** Stores the outcome once; false when the job had ended or the lease is lost. */
  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    const usage = outcome.usage && usageBody(outcome.usage);
    if (outcome.type === "failed") {
      const { error, errorCode } = outcome;
      const code = errorCode ? { error_code: errorCode } : {};
      const body = { type: "failed" as const, success: false as const, error, ...code, usage };
      const fields = errorCode ? ["ecode", errorCode] : [];
      return await this.end(delivery, body, { fields, usage: outcome.usage }) > 0;
    }
    const { image, mimeType: mime, revisedPrompt: revised } = outcome;
    const more = outcome.more ?? [];
    const mimes = [mime, ...more.map((extra) => extra.mimeType)];
    // Stored without a ticket: each delivery puts a current one on them (see linkedJson).
    const images = imageLinks(delivery.jobId, mimes);
    const body = {
      type: "succeeded" as const,
      success: true as const,
      data: { image: "", mime_type: mime, revised_prompt: revised, images },
      usage,
    };
    const fields: RedisArg[] = ["count", String(mimes.length), "mimes", mimes.join(" ")];
    // With an image store the images are objects already: only their keys and sizes go to Redis.
    const objects = outcome.objects ?? [];
    if (objects.length > 0) fields.push(...objectFields(objects));
    else {
      more.forEach((extra, k) => {
        const [bytesField, base64Field] = imageFields(k + 1);
        const binary = this.#ctx.client.binary;
        fields.push(binary ? bytesField : base64Field, this.#imageArg(extra.image));
      });
    }
    // This process's relay may hear of the success on the feed even before the answer: kept for it
    // (the image store's readers keep their own copy).
    const settle = objects.length > 0
      ? () => {}
      : this.#ctx.recent.expect(delivery.jobId, image, { base64: outcome.base64 });
    let stored = false;
    try {
      const bytes = objects.length > 0 ? undefined : image;
      const extra = { image: bytes, mime, revised, fields, usage: outcome.usage };
      stored = await this.end(delivery, body, extra) > 0;
    } finally {
      settle(stored);
    }
    return stored;
  }

  /** Fails the job, keeps `reason` in the dead-letter stream only, and acknowledges. */
  async deadLetter(delivery: Delivery, reason: string): Promise<boolean> {
    const body = { type: "failed" as const, success: false as const, error: PROCESSING_ERROR };
    return await this.end(delivery, body, { dead: reason || "unknown" }) > 0;
  }

  /** Acknowledges and deletes an entry without touching its job, unless the lease is lost. */
  async ack(delivery: Delivery): Promise<void> {
    const args = [delivery.entryId, GROUP, delivery.consumer];
    const stream = this.#ctx.keys.jobs(this.#partition(delivery));
    await this.#ctx.grouped(() => this.#ctx.run("ack", [stream], args));
  }

  /** Requeues a running job after `delayMs`; false when it no longer runs or the lease is lost. */
  async retryLater(delivery: Delivery, delayMs: number, giveBack = false): Promise<boolean> {
    const { keys: k } = this.#ctx;
    const p = this.#partition(delivery);
    const keys = [k.job(delivery.jobId), k.jobs(p), k.delayed(p), k.room(p), k.clock(p)];
    const args = [
      delivery.entryId,
      GROUP,
      String(Date.now() + Math.max(0, delayMs)),
      new Date().toISOString(),
      delivery.jobId,
      delivery.consumer,
      giveBack ? "1" : "0",
    ];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("retry", keys, args));
    return reply === 1;
  }

  /**
   * Moves due delayed jobs back to their streams: one read of every partition's due ids, then one
   * PROMOTE per partition that has some, naming each due job's hash in KEYS; returns how many moved.
   */
  async promoteDue(now: number): Promise<number> {
    const { keys: k } = this.#ctx;
    const due = await this.#ctx.spread(
      this.#ctx.all.map((
        p,
      ) => ["ZRANGEBYSCORE", k.delayed(p), "-inf", String(now), "LIMIT", "0", "500"]),
    );
    // Each partition on its own: one whose master is down holds back only its own retries.
    const moved = await this.#ctx.perPartition("promote due retries", this.#ctx.all, async (p) => {
      const ids = due[p];
      if (ids instanceof Error) throw ids;
      if (!Array.isArray(ids) || ids.length === 0) return 0;
      const names = ids.map(String);
      const keys = [k.delayed(p), k.room(p), k.clock(p), ...names.map((id) => k.job(id))];
      return await this.#ctx.run("promote", keys, [String(now), ...names]);
    });
    return moved.reduce((sum: number, n) => sum + Number(n ?? 0), 0);
  }

  /** Hands an adopted seed entry's job to its partition's waiting room; false when there was none. */
  async park(delivery: Delivery): Promise<{ parked: boolean; waitMs: number }> {
    const { keys: k } = this.#ctx;
    const p = this.#partition(delivery);
    const keys = [k.job(delivery.jobId), k.jobs(p), k.room(p), k.clock(p), k.pace(p)];
    const args = [delivery.entryId, GROUP, delivery.consumer, delivery.jobId, this.#ctx.paceCap];
    const reply = await this.#ctx.grouped(() => this.#ctx.run("park", keys, args)) as number[];
    return { parked: Number(reply[0]) === 1, waitMs: Number(reply[1] ?? -1) };
  }

  /** Closes the claim loops' dedicated connections. */
  close(): Promise<void> {
    return this.#claims.close();
  }
}
