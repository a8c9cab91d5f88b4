/** The in-memory broker of the embedded default: one process, nothing durable, no polling. */
// The Broker interface is asynchronous; this implementation answers synchronously.
// deno-lint-ignore-file require-await
import { BrokerUnavailableError } from "../errors.ts";
import {
  imageLinks,
  isEventId,
  JOB_CANCELED,
  PROCESSING_ERROR,
  type StoredEvent,
  TERMINAL_STATUSES,
} from "../live/notifications.ts";
import { OwnerLimits } from "./memory_limits.ts";
import { MemoryTurns } from "./memory_turns.ts";
import { secondsToDayEnd, usageBody } from "../pace/usage.ts";
import { MemoryStore } from "./memory_store.ts";
import { type DeadLetter, DeadLetters, DelayedRetries, EntryQueue } from "./memory_stream.ts";
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
  NewJob,
  Outcome,
  SeedAdoption,
  SubmitLimits,
  SubmitResult,
  Turn,
  UsageDay,
  WebhookOutbox,
} from "./types.ts";

/** Options of the in-memory broker. */
export interface MemoryBrokerOptions {
  /** Seconds a job, its image and its events live after the job ended (default one day). */
  ttlSec?: number;
  /** Clock in epoch milliseconds (tests pass a fake one). */
  now?: () => number;
  /** Provider requests/s (0: learned from 429s; null or absent: never paced). */
  pace?: number | null;
}

/** A dead letter the in-memory broker recorded (kept in memory_stream.ts). */
export type { DeadLetter } from "./memory_stream.ts";

const TAIL_COUNT = 1_000;

/** Creates the single-process broker used when no Redis is configured. */
export function createMemoryBroker(options: MemoryBrokerOptions = {}): MemoryBroker {
  return new MemoryBroker(options);
}

/** A broker kept in maps; blocking reads wait on promises that writes resolve. */
export class MemoryBroker implements Broker {
  readonly kind = "memory" as const;
  readonly blocking = true;
  readonly partitions = 1;
  readonly separateIntake = false;
  #store: MemoryStore;
  #queue: EntryQueue;
  #delayed = new DelayedRetries(() => this.promoteDue());
  #dead = new DeadLetters();
  #secrets = new Map<string, string>();
  #limits: OwnerLimits;
  #turns: MemoryTurns;
  /** Images each job asked for, when the quota reserved them (given back as the job ends). */
  #asked = new Map<string, number>();

  constructor({ ttlSec = 86_400, now = Date.now, pace = null }: MemoryBrokerOptions = {}) {
    if (!(ttlSec > 0)) throw new RangeError("Cannot create the broker: ttlSec must be positive");
    this.#store = new MemoryStore(ttlSec * 1000, now);
    this.#queue = new EntryQueue(() => this.#store.wake());
    this.#limits = new OwnerLimits((id) => this.#store.ended(id));
    this.#turns = new MemoryTurns({
      pace,
      wake: () => this.#store.wake(),
      queue: this.#queue,
      nextEntry: () => this.#store.nextId(),
      now: () => this.#store.now(),
    });
  }

  async init(): Promise<void> {}

  /** One partition: the intake is the jobs stream itself. */
  async moveIntake(): Promise<number> {
    return 0;
  }

  async ping(): Promise<void> {
    if (this.#store.closed) {
      throw new BrokerUnavailableError("Cannot reach the broker: it is closed");
    }
  }

  async submit(job: NewJob, limits: SubmitLimits = {}): Promise<SubmitResult> {
    if (this.#store.sweep()) this.#limits.prune(this.#store.now());
    const found = this.#store.job(job.id);
    if (found) return { created: false, job: { ...found.record } };
    const { references: _, ...fields } = job;
    const attempted = (refused: NonNullable<SubmitResult["refused"]>): SubmitResult => ({
      created: false,
      refused,
      job: { ...fields, status: "queued", createdAt: "", updatedAt: "", attempts: 0 },
    });
    if (limits.ratePerMinute) {
      const retryAfterSec = this.#limits.rate(job.owner, limits.ratePerMinute, this.#store.now());
      if (retryAfterSec > 0) return { ...attempted("rate_limited"), retryAfterSec };
    }
    if (limits.maxQueued && this.#queue.size + this.#turns.room.size >= limits.maxQueued) {
      return attempted("backlog");
    }
    if (limits.maxActivePerOwner && this.#limits.busy(job.owner, limits.maxActivePerOwner)) {
      return attempted("owner_busy");
    }
    const images = limits.images ?? job.n ?? 1;
    if (limits.maxImagesPerDay) {
      if (!this.#turns.reserve(job.owner, images, limits.maxImagesPerDay)) {
        const retryAfterSec = secondsToDayEnd(this.#store.now());
        return { ...attempted("quota_exceeded"), retryAfterSec };
      }
      this.#asked.set(job.id, images);
    }
    const record = this.#store.create(job);
    this.#turns.enqueue(job.id, job.owner);
    if (limits.maxActivePerOwner) this.#limits.add(job.owner, job.id);
    return { created: true, job: { ...record } };
  }

  async get(id: string, options: { image?: boolean } = {}): Promise<JobView | null> {
    const job = this.#store.job(id);
    if (!job) return null;
    const view: JobView = { ...job.record };
    if (options.image && view.status === "succeeded" && job.image !== undefined) {
      view.image = job.image;
    }
    return view;
  }

  async image(id: string): Promise<string | null> {
    return this.#store.job(id)?.image ?? null;
  }

  async imageAt(id: string, index: number): Promise<string | null> {
    const job = this.#store.job(id);
    if (!job || job.record.status !== "succeeded") return null;
    return (index === 0 ? job.image : job.more?.[index - 1]) ?? null;
  }

  async references(id: string): Promise<string[]> {
    return [...this.#store.job(id)?.references ?? []];
  }

  async cancel(id: string): Promise<CancelResult> {
    const job = this.#store.job(id);
    if (!job) return "missing";
    if (TERMINAL_STATUSES.has(job.record.status)) return "ended";
    this.#delayed.remove(id);
    this.#turns.room.remove(id);
    this.#ended(job.record, "canceled");
    job.record.error = JOB_CANCELED;
    this.#store.change(job, "canceled", { type: "canceled", success: false, error: JOB_CANCELED });
    return "canceled";
  }

  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    return this.#store.block(options, () => {
      const given = this.#turns.turn(count);
      // Jobs wait for the pace: look again when it has a turn (a write wakes the claim sooner).
      if (given.moved === 0 && given.waiting > 0) this.#turns.wakeIn(given.waitMs);
      return this.#queue.take(consumer, count, this.#store.now());
    });
  }

  get pace(): number | null {
    return this.#turns.pace;
  }

  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    return this.#queue.reclaim(consumer, idleMs, count, this.#store.now());
  }

  async renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]> {
    return deliveries.map((delivery) => {
      if (!this.#queue.renew(delivery.entryId, consumer, this.#store.now())) return "lost";
      return this.#store.job(delivery.jobId)?.record.status ?? null;
    });
  }

  async pruneConsumers(idleMs: number): Promise<number> {
    return this.#queue.prune(idleMs, this.#store.now());
  }

  async adoptSeed(delivery: Delivery, adoption: SeedAdoption): Promise<boolean> {
    if (this.#store.job(delivery.jobId)) return false;
    this.#store.create({
      id: delivery.jobId,
      owner: adoption.owner,
      prompt: adoption.prompt,
    });
    return true;
  }

  async start(delivery: Delivery): Promise<JobRecord | null> {
    if (this.#leaseLost(delivery)) return null;
    const job = this.#store.job(delivery.jobId);
    const status = job?.record.status;
    if (!job || (status !== "queued" && status !== "running")) return null;
    if (status === "running" && job.entry && job.entry !== delivery.entryId) return null;
    job.entry = delivery.entryId;
    job.record.attempts += 1;
    if (status === "queued") this.#store.change(job, "running", { type: "started", success: true });
    return { ...job.record };
  }

  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    // The same write again (as a resend after a reconnect runs it twice in Redis): done.
    if (this.#endedBy(delivery, outcome.type)) return true;
    if (this.#leaseLost(delivery)) return false;
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (!job || TERMINAL_STATUSES.has(job.record.status)) return false;
    if (delivery.entryId !== "") job.fin = `${delivery.entryId} ${outcome.type}`;
    const record = job.record;
    const usage = outcome.usage ? { usage: usageBody(outcome.usage) } : {};
    if (outcome.usage) record.usage = { ...outcome.usage };
    this.#ended(record, outcome.type, outcome.usage);
    if (outcome.type === "failed") {
      const { error, errorCode } = outcome;
      record.error = error;
      if (errorCode) record.errorCode = errorCode;
      const code = errorCode ? { error_code: errorCode } : {};
      const event = { type: "failed", success: false, error, ...code, ...usage } as const;
      this.#store.change(job, "failed", event);
      return true;
    }
    const { image, mimeType, revisedPrompt } = outcome;
    const data = { image: "", mime_type: mimeType };
    delete record.error;
    record.mimeType = mimeType;
    if (revisedPrompt !== undefined) {
      record.revisedPrompt = revisedPrompt;
      Object.assign(data, { revised_prompt: revisedPrompt });
    }
    const more = outcome.more ?? [];
    if (outcome.objects?.length) record.objects = outcome.objects.map((o) => ({ ...o }));
    else {
      job.image = outcome.base64 ?? image.toBase64();
      if (more.length > 0) job.more = more.map((extra) => extra.image.toBase64());
    }
    record.imageCount = 1 + more.length;
    record.mimeTypes = [mimeType, ...more.map((extra) => extra.mimeType)];
    Object.assign(data, { images: imageLinks(record.id, record.mimeTypes, outcome.ticket) });
    this.#store.change(job, "succeeded", { type: "succeeded", success: true, data, ...usage });
    return true;
  }

  /** The reason is the worker's to log; nothing a client sees keeps it. */
  async retryLater(
    delivery: Delivery,
    delayMs: number,
    _reason: string,
    { giveBack = false }: { giveBack?: boolean } = {},
  ): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (job?.record.status !== "running") return false;
    Object.assign(job.record, { status: "queued", updatedAt: this.#store.iso() });
    if (giveBack) {
      job.record.attempts = Math.max(0, job.record.attempts - 1);
      this.#turns.room.park(job.record.id, job.record.owner, true);
    } else {
      this.#delayed.add(delivery.jobId, this.#store.now(), delayMs, !this.#store.closed);
    }
    return true;
  }

  async turn(_partition: number, want: number): Promise<Turn> {
    return this.#turns.turn(want);
  }

  async throttle(retryAfterMs: number): Promise<void> {
    this.#turns.throttle(retryAfterMs);
  }

  async park(delivery: Delivery): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (job?.record.status !== "queued") return false;
    if (!this.#turns.room.has(job.record.id)) this.#turns.enqueue(job.record.id, job.record.owner);
    return true;
  }

  async usage(owner: string, day: string): Promise<UsageDay> {
    return this.#turns.day(owner, day);
  }

  /** Counts a job's end on its owner's day. */
  #ended(record: JobRecord, type: "succeeded" | "failed" | "canceled", usage?: Outcome["usage"]) {
    this.#turns.room.remove(record.id);
    const asked = this.#asked.get(record.id);
    this.#asked.delete(record.id);
    this.#turns.ended({ owner: record.owner, createdAt: record.createdAt, type, usage, asked });
  }

  async promoteDue(now: number = this.#store.now()): Promise<number> {
    let moved = 0;
    for (const jobId of this.#delayed.takeDue(now)) {
      const job = this.#store.job(jobId);
      if (!job || this.#store.ended(jobId)) continue;
      this.#turns.room.park(jobId, job.record.owner, true);
      moved += 1;
    }
    return moved;
  }

  async deadLetter(delivery: Delivery, reason: string): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    let ended = false;
    if (job && !TERMINAL_STATUSES.has(job.record.status)) {
      if (delivery.entryId !== "") job.fin = `${delivery.entryId} failed`;
      this.#ended(job.record, "failed");
      job.record.error = PROCESSING_ERROR;
      const event = { type: "failed", success: false, error: PROCESSING_ERROR } as const;
      this.#store.change(job, "failed", event);
      ended = true;
    }
    const { jobId, entryId } = delivery;
    this.#dead.add({ jobId, entryId, reason: reason || "unknown", at: this.#store.iso() });
    return ended;
  }

  async ack(delivery: Delivery): Promise<void> {
    if (this.#leaseLost(delivery)) return;
    this.#queue.remove(delivery.entryId);
  }

  async history(id: string): Promise<{ owner: string; events: StoredEvent[] } | null> {
    const job = this.#store.job(id);
    return job ? { owner: job.record.owner, events: await this.events(id) } : null;
  }

  async events(id: string, options: { after?: string } = {}): Promise<StoredEvent[]> {
    return this.#store.events(id, options.after);
  }

  async tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }> {
    if (cursor === null) return { cursor: this.#store.feedHead(), items: [] };
    if (!isEventId(cursor)) {
      throw new RangeError("Cannot read the feed: the cursor is not a stream id");
    }
    const found = await this.#store.block(options, () => this.#store.feedAfter(cursor, TAIL_COUNT));
    const items = found.map(({ item }) => structuredClone(item));
    return { cursor: found.at(-1)?.id ?? cursor, items };
  }

  async list(owner: string, options: ListOptions): Promise<JobPage> {
    return this.#store.list(owner, options);
  }

  async queuePosition(id: string): Promise<number | null> {
    if (this.#store.job(id)?.record.status !== "queued") return null;
    // Ahead of a waiting job: the entries no worker took yet, and those the fair order puts first.
    // A job waiting out a retry backoff has the whole line ahead of it.
    const rank = this.#turns.room.rank(id);
    if (rank !== null) return this.#queue.undelivered + rank;
    return this.#queue.position(id) ?? this.#queue.undelivered + this.#turns.room.size;
  }

  async replay(
    cursor: string,
    limit: number,
  ): Promise<{ cursor: string; items: FeedItem[] } | null> {
    if (!isEventId(cursor)) return null;
    const found = this.#store.feedSince(cursor, limit);
    if (found === null) return null;
    const items = found.map(({ item }) => structuredClone(item));
    return { cursor: found.at(-1)?.id ?? cursor, items };
  }

  /** Pending webhook deliveries; a 410 also forgets the job's webhook. */
  get webhooks(): WebhookOutbox {
    return this.#store.outbox;
  }

  async sharedSecret(name: string): Promise<string> {
    let secret = this.#secrets.get(name);
    if (secret === undefined) {
      const bytes = crypto.getRandomValues(new Uint8Array(32));
      secret = bytes.toBase64({ alphabet: "base64url", omitPadding: true });
      this.#secrets.set(name, secret);
    }
    return secret;
  }

  /** Adds an entry with the seed's fields, as another service adds one to the jobs stream. */
  addSeedEntry(seed: { id: string; token: string; prompt: string }): string {
    const entryId = this.#store.nextId();
    this.#queue.add({ entryId, jobId: seed.id, seed: { token: seed.token, prompt: seed.prompt } });
    return entryId;
  }

  /** The dead letters recorded so far, oldest first. */
  deadLetters(): DeadLetter[] {
    return this.#dead.list();
  }

  async close(): Promise<void> {
    this.#delayed.stop();
    this.#turns.close();
    this.#store.close();
  }

  /** Sizes of the per-owner maps (rate windows, active-job sets), which the sweep prunes. */
  get ownerMaps(): { rateWindows: number; activeSets: number } {
    return this.#limits.sizes;
  }

  /** True when this delivery's write with this status is the one that ended its job. */
  #endedBy(delivery: Delivery, status: string): boolean {
    const fin = this.#store.job(delivery.jobId)?.fin;
    return delivery.entryId !== "" && fin === `${delivery.entryId} ${status}`;
  }

  /** True when the delivery names a consumer that no longer holds its entry (then nothing is written). */
  #leaseLost({ entryId, consumer }: Delivery): boolean {
    return entryId !== "" && consumer !== "" && !this.#queue.holds(entryId, consumer);
  }
}
