/** The Redis Streams broker, written once over the small RedisClient seam (TCP or Upstash REST). */
import { BrokerUnavailableError } from "../errors.ts";
import {
  type JobStatus,
  type NotificationBody,
  PROCESSING_ERROR,
  type StoredEvent,
} from "../notifications.ts";
import { defineScript, type RedisClient, type RedisReply, type Script } from "../redis/types.ts";
import { BlockingReader } from "./blocking_reader.ts";
import { CREATE, FINISH, PROMOTE, RECORD_FIELDS, RETRY, START } from "./scripts.ts";
import {
  fieldsToObject,
  hydrate,
  notification,
  parseNotification,
  toDelivery,
  toRecord,
} from "./redis_codec.ts";
import type {
  BlockOptions,
  Broker,
  CancelResult,
  Delivery,
  FeedItem,
  JobRecord,
  JobView,
  NewJob,
  Outcome,
  SeedAdoption,
  SubmitLimits,
  SubmitResult,
} from "./types.ts";

/** Options of the Redis broker. */
export interface RedisBrokerOptions {
  prefix?: string;
  ttlSec?: number;
  feedMaxLen?: number;
  kind?: "redis" | "upstash";
}

const GROUP = "workers";
const CANCELED = "Job canceled";

class RedisBroker implements Broker {
  readonly kind: "redis" | "upstash";
  readonly blocking: boolean;
  #client: RedisClient;
  #prefix: string;
  #ttl: string;
  #feedMax: string;
  #scripts: Promise<Record<string, Script>>;
  #claims: BlockingReader;
  #feed: BlockingReader;
  #closing: Promise<void> | null = null;

  constructor(client: RedisClient, options: RedisBrokerOptions) {
    this.#client = client;
    this.#claims = new BlockingReader(client);
    this.#feed = new BlockingReader(client);
    this.kind = options.kind ?? "redis";
    this.blocking = this.kind === "redis";
    this.#prefix = options.prefix ?? "img:";
    this.#ttl = String(options.ttlSec ?? 86_400);
    this.#feedMax = String(options.feedMaxLen ?? 50_000);
    this.#scripts = (async () => ({
      create: await defineScript(CREATE),
      start: await defineScript(START),
      finish: await defineScript(FINISH),
      retry: await defineScript(RETRY),
      promote: await defineScript(PROMOTE),
    }))();
  }

  #key(name: string): string {
    return this.#prefix + name;
  }

  #job(id: string): string {
    return this.#key(`job:${id}`);
  }

  async #run(name: string, keys: string[], args: string[]): Promise<RedisReply> {
    const script = (await this.#scripts)[name];
    return await this.#client.eval(script, keys, args);
  }

  async init(): Promise<void> {
    try {
      await this.#client.send(["XGROUP", "CREATE", this.#key("jobs"), GROUP, "0", "MKSTREAM"]);
    } catch (error) {
      if (!(error instanceof Error && error.message.includes("BUSYGROUP"))) throw error;
    }
  }

  async ping(): Promise<void> {
    try {
      await this.#client.send(["PING"]);
    } catch (error) {
      throw new BrokerUnavailableError("Cannot reach Redis", { cause: error });
    }
  }

  async #create(job: NewJob, enqueue: boolean, limits: SubmitLimits = {}): Promise<SubmitResult> {
    const now = new Date().toISOString();
    const queued = notification(job.id, { type: "queued", success: true });
    const keys = [
      this.#job(job.id),
      this.#key("jobs"),
      this.#key(`owner:${job.owner}:active`),
      this.#key(`owner:${job.owner}:rate`),
    ];
    const reply = await this.#run("create", keys, [
      job.id,
      job.owner,
      job.prompt,
      job.model ?? "",
      job.aspectRatio ?? "",
      now,
      this.#ttl,
      queued,
      enqueue ? "1" : "0",
      String(limits.maxActivePerOwner ?? 0),
      String(limits.maxQueued ?? 0),
      this.#job(""),
      String(limits.ratePerMinute ?? 0),
    ]) as RedisReply[];
    if (reply[0] === 0) return { created: false, job: toRecord(job.id, reply[1] as RedisReply[]) };
    const record: JobRecord = {
      ...job,
      status: "queued",
      createdAt: now,
      updatedAt: now,
      attempts: 0,
    };
    if (reply[0] === -3) {
      const retryAfterSec = Math.max(1, Number(reply[1]));
      return { created: false, job: record, refused: "rate_limited", retryAfterSec };
    }
    if (reply[0] === -1) return { created: false, job: record, refused: "owner_busy" };
    if (reply[0] === -2) return { created: false, job: record, refused: "backlog" };
    return { created: true, job: record };
  }

  submit(job: NewJob, limits?: SubmitLimits): Promise<SubmitResult> {
    return this.#create(job, true, limits);
  }

  async adoptSeed(delivery: Delivery, adoption: SeedAdoption): Promise<boolean> {
    const result = await this.#create({ id: delivery.jobId, ...adoption }, false);
    return result.created;
  }

  async get(id: string, options: { image?: boolean } = {}): Promise<JobView | null> {
    const fields = options.image ? [...RECORD_FIELDS, "image"] : [...RECORD_FIELDS];
    const values = await this.#client.send(["HMGET", this.#job(id), ...fields]) as RedisReply[];
    if (values[1] === null) return null;
    const record: JobView = toRecord(id, values);
    if (options.image && record.status === "succeeded" && values[RECORD_FIELDS.length]) {
      record.image = String(values[RECORD_FIELDS.length]);
    }
    return record;
  }

  async #finish(
    delivery: Delivery | null,
    body: NotificationBody,
    extra: {
      image?: string;
      mime?: string;
      revised?: string;
      dead?: string;
      onlyIf?: string;
      reason?: string;
    },
  ): Promise<number> {
    const jobId = delivery?.jobId ?? "";
    const error = "error" in body ? body.error : "";
    return await this.#run("finish", [
      this.#job(jobId),
      this.#key("events"),
      this.#key("jobs"),
      this.#key("jobs:dead"),
    ], [
      delivery?.entryId ?? "",
      GROUP,
      body.type,
      notification(jobId, body),
      new Date().toISOString(),
      this.#ttl,
      this.#feedMax,
      jobId,
      error,
      extra.mime ?? "",
      extra.revised ?? "",
      extra.image ?? "",
      extra.dead ?? "",
      extra.onlyIf ?? "",
      extra.reason ?? "",
    ]) as number;
  }

  async cancel(id: string): Promise<CancelResult> {
    const fake: Delivery = { entryId: "", jobId: id, deliveries: 0 };
    const seq = await this.#finish(fake, { type: "canceled", success: false, error: CANCELED }, {
      onlyIf: "queued running",
    });
    return seq > 0 ? "canceled" : seq === 0 ? "ended" : "missing";
  }

  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    if (outcome.type === "failed") {
      const body = { ...outcome, success: false as const };
      return await this.#finish(delivery, body, { reason: outcome.reason }) > 0;
    }
    const body = {
      type: "succeeded" as const,
      success: true as const,
      data: { image: "", mime_type: outcome.mimeType, revised_prompt: outcome.revisedPrompt },
    };
    return await this.#finish(delivery, body, {
      image: outcome.image,
      mime: outcome.mimeType,
      revised: outcome.revisedPrompt,
    }) > 0;
  }

  async deadLetter(delivery: Delivery, reason: string): Promise<void> {
    const body = {
      type: "failed" as const,
      success: false as const,
      error: PROCESSING_ERROR,
      reason,
    };
    await this.#finish(delivery, body, { dead: reason || "unknown", reason });
  }

  async ack(delivery: Delivery): Promise<void> {
    const jobs = this.#key("jobs");
    await this.#client.pipeline([
      ["XACK", jobs, GROUP, delivery.entryId],
      ["XDEL", jobs, delivery.entryId],
    ]);
  }

  async start(delivery: Delivery): Promise<JobRecord | null> {
    const started = notification(delivery.jobId, { type: "started", success: true });
    const reply = await this.#run("start", [this.#job(delivery.jobId), this.#key("events")], [
      new Date().toISOString(),
      started,
      this.#feedMax,
      delivery.jobId,
    ]);
    return Array.isArray(reply) ? toRecord(delivery.jobId, reply) : null;
  }

  async retryLater(delivery: Delivery, delayMs: number, reason: string): Promise<boolean> {
    const reply = await this.#run("retry", [
      this.#job(delivery.jobId),
      this.#key("jobs"),
      this.#key("jobs:delayed"),
    ], [
      delivery.entryId,
      GROUP,
      String(Date.now() + Math.max(0, delayMs)),
      reason,
      new Date().toISOString(),
      delivery.jobId,
    ]);
    return reply === 1;
  }

  async promoteDue(now = Date.now()): Promise<number> {
    const keys = [this.#key("jobs:delayed"), this.#key("jobs")];
    return await this.#run("promote", keys, [String(now), "500"]) as number;
  }

  async claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    const reply = await this.#claims.read(
      ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", String(count)],
      ["STREAMS", this.#key("jobs"), ">"],
      options,
    );
    if (!Array.isArray(reply) || reply.length === 0) return [];
    const [, entries] = reply[0] as [string, RedisReply[]];
    return entries.map((entry) => toDelivery(entry));
  }

  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    const jobs = this.#key("jobs");
    const reply = await this.#client.send([
      "XAUTOCLAIM",
      jobs,
      GROUP,
      consumer,
      String(idleMs),
      "0-0",
      "COUNT",
      String(count),
    ]) as RedisReply[];
    const entries = (reply[1] as RedisReply[]).filter((e) => Array.isArray(e) && e[1] !== null);
    if (entries.length === 0) return [];
    const pending = await this.#client.send(
      ["XPENDING", jobs, GROUP, "-", "+", String(entries.length * 4), consumer],
    ) as RedisReply[];
    const counts = new Map(pending.map((p) => {
      const row = p as RedisReply[];
      return [String(row[0]), Number(row[3])];
    }));
    return entries.map((entry) => {
      const id = String((entry as RedisReply[])[0]);
      return toDelivery(entry, counts.get(id) ?? 2);
    });
  }

  async renew(consumer: string, deliveries: Delivery[]): Promise<(JobStatus | null)[]> {
    if (deliveries.length === 0) return [];
    const ids = deliveries.map((d) => d.entryId);
    const replies = await this.#client.pipeline([
      ["XCLAIM", this.#key("jobs"), GROUP, consumer, "0", ...ids, "JUSTID"],
      ...deliveries.map((d) => ["HGET", this.#job(d.jobId), "status"]),
    ]);
    if (replies[0] instanceof Error) throw replies[0];
    return replies.slice(1).map((r) => {
      if (r instanceof Error) throw r;
      return r === null ? null : String(r) as JobStatus;
    });
  }

  async events(id: string, options: { after?: string } = {}): Promise<StoredEvent[]> {
    return (await this.history(id, options.after))?.events ?? [];
  }

  async history(id: string, after?: string) {
    const fields = fieldsToObject(await this.#client.send(["HGETALL", this.#job(id)]));
    if (fields.status === undefined) return null;
    return { owner: fields.owner ?? "", events: this.#decodeEvents(fields, after) };
  }

  #decodeEvents(fields: Record<string, string>, after?: string): StoredEvent[] {
    const last = Number(fields.seq ?? 0);
    const out: StoredEvent[] = [];
    for (let seq = Number(after ?? 0) + 1; seq <= last; seq++) {
      const n = fields[`e${seq}`] ? parseNotification(fields[`e${seq}`]) : null;
      if (n) out.push({ eventId: String(seq), notification: hydrate(n, fields) });
    }
    return out;
  }

  async tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }> {
    const feed = this.#key("events");
    if (cursor === null) {
      const last = await this.#client.send(["XREVRANGE", feed, "+", "-", "COUNT", "1"]);
      const id = Array.isArray(last) && last.length > 0
        ? String((last[0] as RedisReply[])[0])
        : "0-0";
      return { cursor: id, items: [] };
    }
    const reply = await this.#feed.read(
      ["XREAD", "COUNT", "1000"],
      ["STREAMS", feed, cursor],
      options,
    );
    if (!Array.isArray(reply) || reply.length === 0) return { cursor, items: [] };
    const [, entries] = reply[0] as [string, RedisReply[]];
    const items: FeedItem[] = [];
    for (const entry of entries) {
      const [entryId, raw] = entry as [string, RedisReply];
      cursor = entryId;
      const f = fieldsToObject(raw);
      const n = f.n ? parseNotification(f.n) : null;
      if (n && f.j && f.e) items.push({ jobId: f.j, eventId: f.e, notification: n });
    }
    return { cursor, items };
  }

  async sharedSecret(name: string): Promise<string> {
    const key = this.#key(`secret:${name}`);
    const candidate = crypto.getRandomValues(new Uint8Array(32)).toBase64({
      alphabet: "base64url",
    });
    const [, value] = await this.#client.pipeline([
      ["SET", key, candidate, "NX"],
      ["GET", key],
    ]);
    if (value instanceof Error || value === null) throw value ?? new Error("Cannot read secret");
    return String(value);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([this.#claims.close(), this.#feed.close()]);
      await this.#client.close();
    })();
    return this.#closing;
  }
}

/** Builds the Redis Streams broker over a Redis transport. */
export function createRedisBroker(client: RedisClient, options: RedisBrokerOptions = {}): Broker {
  return new RedisBroker(client, options);
}
