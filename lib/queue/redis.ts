/** The Redis Streams broker, written once over the small RedisClient seam (TCP or Upstash REST). */
import { BrokerUnavailableError } from "../errors.ts";
import {
  compareEventIds,
  JOB_CANCELED,
  type StoredEvent,
  withImage,
} from "../live/notifications.ts";
import { type RedisClient, type RedisReply, replyText } from "../redis/types.ts";
import { RECORD_FIELDS, REFERENCE_FIELDS } from "./scripts.ts";
import {
  IMAGE_BASE64,
  IMAGE_BYTES,
  imageFields,
  imageOf,
  jobFields,
  parseNotification,
  toRecord,
} from "./redis_codec.ts";
import { RedisContext } from "./redis_context.ts";
import { FeedReader } from "./redis_feed.ts";
import { IntakeMover } from "./redis_intake.ts";
import { createJob } from "./redis_submit.ts";
import { RedisWorkerOps } from "./redis_worker_ops.ts";
import { listJobs, queuePosition } from "./redis_listing.ts";
import { RedisOutbox } from "./redis_webhooks.ts";
import { kick, throttle, turn } from "./redis_turns.ts";
import { readUsage } from "./redis_usage.ts";
import { wakeChannels } from "./wake_scripts.ts";
import { probe } from "./redis_probe.ts";
import { checkPartitions } from "./layout_record.ts";
import type {
  BlockOptions,
  Broker,
  CancelResult,
  Delivery,
  FeedItem,
  JobPage,
  JobRecord,
  JobView,
  LeaseStatus,
  ListOptions,
  LocalJob,
  NewJob,
  NoticeOutbox,
  Outcome,
  ProbeResult,
  SeedAdoption,
  SubmitLimits,
  SubmitResult,
  Turn,
  UsageDay,
  WebhookOutbox,
} from "./types.ts";

/** Options of the Redis broker. */
export interface RedisBrokerOptions {
  prefix?: string;
  ttlSec?: number;
  /** How long the relay feeds keep items (default 12 minutes: `GET /v1/events` replays 10). */
  feedRetentionMs?: number;
  kind?: "redis" | "upstash";
  /** How many partitions the jobs are split into (1: today's untagged keys, but on a Cluster). */
  partitions?: number;
  /** True on a Redis Cluster: every partition's keys are tagged, even with one partition. */
  cluster?: boolean;
  /** Provider requests/s of the whole deployment (0: learned from 429s; null or absent: never paced). */
  pace?: number | null;
  /** Told of a failed write that no caller waits for (default: console.error). */
  onError?: (what: string, error: unknown) => void;
  /** True: the scripts publish wake-ups on `wakeChannels(prefix)` (see wake_scripts.ts). */
  wakeups?: boolean;
  /** The most bytes one stored image may have, checked in Redis (0 or absent: no cap). */
  maxImageBytes?: number;
  /** Adds a Socket.IO notice of each job end this process writes to `notices` (the bridge is on). */
  notices?: boolean;
}

class RedisBroker implements Broker {
  readonly kind: "redis" | "upstash";
  readonly blocking: boolean;
  readonly partitions: number;
  readonly separateIntake: boolean;
  #ctx: RedisContext;
  #ops: RedisWorkerOps;
  #feed: FeedReader;
  #intake: IntakeMover;
  #closing: Promise<void> | null = null;
  /** Pending webhook deliveries, one sorted set per partition. */
  readonly webhooks: WebhookOutbox;
  /** Pending Socket.IO notices, one sorted set per partition (with `notices` only). */
  readonly notices?: NoticeOutbox;
  #created = new Set<(job: LocalJob) => void>();

  constructor(client: RedisClient, options: RedisBrokerOptions) {
    this.kind = options.kind ?? "redis";
    this.blocking = this.kind === "redis";
    this.partitions = options.partitions ?? 1;
    this.#ctx = new RedisContext(client, {
      prefix: options.prefix ?? "img:",
      ttlSec: options.ttlSec ?? 86_400,
      feedRetentionMs: options.feedRetentionMs ?? 12 * 60_000,
      partitions: this.partitions,
      multiSlotPipelines: this.kind === "upstash",
      cluster: options.cluster,
      pace: options.pace,
      onError: options.onError,
      maxImageBytes: options.maxImageBytes,
      notices: options.notices,
      wakeChannels: options.wakeups ? wakeChannels(options.prefix ?? "img:") : undefined,
    });
    this.separateIntake = this.#ctx.keys.tagged;
    this.#ops = new RedisWorkerOps(this.#ctx, this.blocking);
    this.webhooks = new RedisOutbox(this.#ctx);
    if (options.notices) {
      this.notices = new RedisOutbox(this.#ctx, (p) => this.#ctx.keys.notices(p));
    }
    this.#feed = new FeedReader(this.#ctx, this.blocking);
    this.#intake = new IntakeMover(this.#ctx);
  }

  #job(id: string): string {
    return this.#ctx.job(id);
  }

  /** Checks (or, on a fresh Redis, records) the partition count, then creates the streams' groups. */
  async init(): Promise<void> {
    await checkPartitions(this.#ctx.client, this.#ctx.keys.prefix, this.partitions);
    await this.#ctx.init();
  }

  /** Checks that Redis answers and that the jobs group exists, recreating it when it was lost. */
  async ping(): Promise<void> {
    try {
      await this.#ctx.init();
    } catch (error) {
      throw new BrokerUnavailableError("Cannot reach Redis", { cause: error });
    }
  }

  #create(job: NewJob, enqueue: boolean, limits?: SubmitLimits): Promise<SubmitResult> {
    const announce = this.#created.size > 0
      ? (local: LocalJob) => this.#created.forEach((listener) => listener(local))
      : undefined;
    return createJob(this.#ctx, job, enqueue, limits, announce);
  }

  onCreate(listener: (job: LocalJob) => void): () => void {
    this.#created.add(listener);
    return () => this.#created.delete(listener);
  }

  submit(job: NewJob, limits?: SubmitLimits): Promise<SubmitResult> {
    return this.#create(job, true, limits);
  }

  async adoptSeed(delivery: Delivery, adoption: SeedAdoption): Promise<boolean> {
    const result = await this.#create({ id: delivery.jobId, ...adoption }, false);
    return result.created;
  }

  async get(id: string, options: { image?: boolean } = {}): Promise<JobView | null> {
    if (!options.image) {
      const values = await this.#ctx.client.send(["HMGET", this.#job(id), ...RECORD_FIELDS]);
      return (values as RedisReply[])[1] === null ? null : toRecord(id, values as RedisReply[]);
    }
    // As bytes: the image may be raw bytes, base64'd once here.
    const fields = [...RECORD_FIELDS, IMAGE_BYTES, IMAGE_BASE64];
    const values = await this.#ctx.client.sendBytes(["HMGET", this.#job(id), ...fields]);
    const all = values as RedisReply[];
    if (all[1] === null) return null;
    const record: JobView = toRecord(id, all);
    const n = RECORD_FIELDS.length;
    const image = record.status === "succeeded" ? imageOf(all[n], all[n + 1]) : null;
    if (image) record.image = image;
    return record;
  }

  async image(id: string): Promise<string | null> {
    const kept = await this.#ctx.recent.get(id);
    if (kept) return kept;
    const job = this.#job(id);
    const values = await this.#ctx.client.sendBytes(["HMGET", job, IMAGE_BYTES, IMAGE_BASE64]);
    const [bytes, base64] = values as RedisReply[];
    return imageOf(bytes, base64);
  }

  async imageAt(id: string, index: number): Promise<string | null> {
    // Read from the hash even for the first image: what this process finished lately (image()'s
    // shortcut) is by job id only, and this read answers for the job stored now.
    const fields = index === 0 ? [IMAGE_BYTES, IMAGE_BASE64] : imageFields(index);
    const values = await this.#ctx.client.sendBytes(["HMGET", this.#job(id), ...fields]);
    const [bytes, base64] = values as RedisReply[];
    return imageOf(bytes, base64);
  }

  async references(id: string): Promise<string[]> {
    const key = this.#ctx.keys.refs(id);
    const values = await this.#ctx.client.send(["HMGET", key, ...REFERENCE_FIELDS]);
    return (values as RedisReply[]).map(replyText).filter((text) => text !== "");
  }

  async cancel(id: string): Promise<CancelResult> {
    const fake: Delivery = { entryId: "", jobId: id, deliveries: 0, consumer: "" };
    const body = { type: "canceled" as const, success: false as const, error: JOB_CANCELED };
    const seq = await this.#ops.end(fake, body, { onlyIf: "queued running" });
    return seq > 0 ? "canceled" : seq === 0 ? "ended" : "missing";
  }

  finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    return this.#ops.finish(delivery, outcome);
  }

  deadLetter(delivery: Delivery, reason: string): Promise<boolean> {
    return this.#ops.deadLetter(delivery, reason);
  }

  ack(delivery: Delivery): Promise<void> {
    return this.#ops.ack(delivery);
  }

  start(delivery: Delivery): Promise<JobRecord | null> {
    return this.#ops.start(delivery);
  }

  /** The reason is the worker's to log; nothing a client sees keeps it. */
  retryLater(
    delivery: Delivery,
    delayMs: number,
    _reason: string,
    options: { giveBack?: boolean } = {},
  ): Promise<boolean> {
    return this.#ops.retryLater(delivery, delayMs, options.giveBack);
  }

  get pace(): number | null {
    return this.#ops.pace;
  }

  get waiting(): number {
    return this.#ops.waiting;
  }

  probe(leaseMs: number): Promise<ProbeResult> {
    return probe(this.#ctx, leaseMs);
  }

  turn(partition: number, want: number): Promise<Turn> {
    return turn(this.#ctx, partition, want);
  }

  throttle(retryAfterMs: number): Promise<void> {
    return throttle(this.#ctx, retryAfterMs);
  }

  async park(delivery: Delivery): Promise<boolean> {
    const { parked, waitMs } = await this.#ops.park(delivery);
    const p = delivery.partition ?? this.#ctx.keys.partitionOf(delivery.jobId);
    if (parked) kick(this.#ctx, p, waitMs);
    return parked;
  }

  usage(owner: string, day: string): Promise<UsageDay> {
    return readUsage(this.#ctx, owner, day);
  }

  promoteDue(now = Date.now()): Promise<number> {
    return this.#ops.promoteDue(now);
  }

  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    return this.#ops.claim(consumer, count, options);
  }

  reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    return this.#ops.reclaim(consumer, idleMs, count);
  }

  renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]> {
    return this.#ops.renew(consumer, deliveries);
  }

  pruneConsumers(idleMs: number): Promise<number> {
    return this.#ops.pruneConsumers(idleMs);
  }

  async events(id: string, options: { after?: string } = {}): Promise<StoredEvent[]> {
    return (await this.history(id, options.after))?.events ?? [];
  }

  async history(id: string, after?: string) {
    // As bytes: the image may be raw bytes; the other fields are read as text.
    const { fields, image } = jobFields(
      await this.#ctx.client.sendBytes(["HGETALL", this.#job(id)]),
    );
    if (fields.status === undefined) return null;
    return { owner: fields.owner ?? "", events: this.#decodeEvents(fields, image, after) };
  }

  #decodeEvents(fields: Record<string, string>, image: string | null, after?: string) {
    const last = Number(fields.seq ?? 0);
    const out: StoredEvent[] = [];
    for (let seq = 1; seq <= last; seq++) {
      // Hashes written before event ids were times have none: their ids are the sequence.
      const eventId = fields[`i${seq}`] ?? String(seq);
      if (after !== undefined && compareEventIds(eventId, after) <= 0) continue;
      const json = fields[`e${seq}`];
      const n = json ? parseNotification(json) : null;
      if (!n) continue;
      // The stored JSON goes along, so that no subscriber serialises the event again.
      const event: StoredEvent = { eventId, notification: n, json };
      out.push(image ? withImage(event, image) : event);
    }
    return out;
  }

  tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }> {
    return this.#feed.tail(cursor, options);
  }

  list(owner: string, options: ListOptions): Promise<JobPage> {
    return listJobs(this.#ctx, owner, options);
  }

  queuePosition(id: string): Promise<number | null> {
    return queuePosition(this.#ctx, id);
  }

  replay(cursor: string, limit: number): Promise<{ cursor: string; items: FeedItem[] } | null> {
    return this.#feed.replay(cursor, limit);
  }

  moveIntake(consumer: string, options: BlockOptions & { idleMs: number }): Promise<number> {
    return this.#intake.move(consumer, options);
  }

  async evictionPolicy(): Promise<string | null> {
    try {
      const reply = await this.#ctx.client.send(["CONFIG", "GET", "maxmemory-policy"]);
      const policy = Array.isArray(reply) && reply.length >= 2 ? String(reply[1]) : null;
      return policy === null || policy === "noeviction" ? null : policy;
    } catch {
      return null; // CONFIG is often disabled on managed Redis: nothing to say then
    }
  }

  async sharedSecret(name: string): Promise<string> {
    const key = this.#ctx.keys.secret(name);
    const candidate = crypto.getRandomValues(new Uint8Array(32)).toBase64({
      alphabet: "base64url",
    });
    const [, value] = await this.#ctx.client.pipeline([
      ["SET", key, candidate, "NX"],
      ["GET", key],
    ]);
    if (value instanceof Error || value === null) throw value ?? new Error("Cannot read secret");
    return String(value);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const timer of this.#ctx.timers) clearTimeout(timer);
      this.#ctx.timers.clear();
      await Promise.allSettled([this.#ops.close(), this.#feed.close(), this.#intake.close()]);
      await this.#ctx.client.close();
    })();
    return this.#closing;
  }
}

/** Builds the Redis Streams broker over a Redis transport. */
export function createRedisBroker(client: RedisClient, options: RedisBrokerOptions = {}): Broker {
  return new RedisBroker(client, options);
}
