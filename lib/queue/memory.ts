/** The in-memory broker of the embedded default: one process, nothing durable, no polling. */
// The Broker interface is asynchronous; this implementation answers synchronously.
// deno-lint-ignore-file require-await
import { BrokerUnavailableError } from "../errors.ts";
import {
  compareEventIds,
  dataUrl,
  isEventId,
  type JobStatus,
  PROCESSING_ERROR,
  type StoredEvent,
  TERMINAL_STATUSES,
} from "../notifications.ts";
import { EntryQueue, MemoryStore } from "./memory_store.ts";
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

/** Options of the in-memory broker. */
export interface MemoryBrokerOptions {
  /** Seconds a job, its image and its events live after their last change (default one day). */
  ttlSec?: number;
  /** Clock in epoch milliseconds (tests pass a fake one). */
  now?: () => number;
}

/** A dead letter the in-memory broker recorded. */
export interface DeadLetter {
  jobId: string;
  entryId: string;
  reason: string;
  at: string;
}

const DEAD_MAX = 10_000;
const TAIL_COUNT = 1_000;
const CANCELED = "Job canceled";

/** Creates the single-process broker used when no Redis is configured. */
export function createMemoryBroker(options: MemoryBrokerOptions = {}): MemoryBroker {
  return new MemoryBroker(options);
}

/** A broker kept in maps; blocking reads wait on promises that writes resolve. */
export class MemoryBroker implements Broker {
  readonly kind = "memory" as const;
  readonly blocking = true;
  #store: MemoryStore;
  #queue: EntryQueue;
  #delayed = new Map<string, { due: number; timer?: ReturnType<typeof setTimeout> }>();
  #dead: DeadLetter[] = [];
  #secrets = new Map<string, string>();
  #active = new Map<string, Set<string>>();
  #rates = new Map<string, { count: number; resetAt: number }>();

  constructor({ ttlSec = 86_400, now = Date.now }: MemoryBrokerOptions = {}) {
    if (!(ttlSec > 0)) throw new RangeError("Cannot create the broker: ttlSec must be positive");
    this.#store = new MemoryStore(ttlSec * 1000, now);
    this.#queue = new EntryQueue(() => this.#store.wake());
  }

  async init(): Promise<void> {}

  async ping(): Promise<void> {
    if (this.#store.closed) {
      throw new BrokerUnavailableError("Cannot reach the broker: it is closed");
    }
  }

  async submit(job: NewJob, limits: SubmitLimits = {}): Promise<SubmitResult> {
    this.#store.sweep();
    const found = this.#store.job(job.id);
    if (found) return { created: false, job: { ...found.record } };
    const attempted = (refused: NonNullable<SubmitResult["refused"]>): SubmitResult => ({
      created: false,
      refused,
      job: { ...job, status: "queued", createdAt: "", updatedAt: "", attempts: 0 },
    });
    if (limits.ratePerMinute) {
      const now = this.#store.now();
      const window = this.#rates.get(job.owner);
      const fresh = !window || window.resetAt <= now;
      const slot = fresh ? { count: 0, resetAt: now + 60_000 } : window;
      slot.count += 1;
      this.#rates.set(job.owner, slot);
      if (slot.count > limits.ratePerMinute) {
        const retryAfterSec = Math.max(1, Math.ceil((slot.resetAt - now) / 1000));
        return { ...attempted("rate_limited"), retryAfterSec };
      }
    }
    if (limits.maxQueued && this.#queue.size >= limits.maxQueued) return attempted("backlog");
    const active = this.#active.get(job.owner) ?? new Set<string>();
    if (limits.maxActivePerOwner && active.size >= limits.maxActivePerOwner) {
      for (const id of active) {
        const status = this.#store.job(id)?.record.status;
        if (!status || TERMINAL_STATUSES.has(status)) active.delete(id);
      }
      if (active.size >= limits.maxActivePerOwner) return attempted("owner_busy");
    }
    const record = this.#store.create(job);
    this.#queue.add({ entryId: this.#store.nextId(), jobId: job.id });
    if (limits.maxActivePerOwner) this.#active.set(job.owner, active.add(job.id));
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

  async cancel(id: string): Promise<CancelResult> {
    const job = this.#store.job(id);
    if (!job) return "missing";
    if (TERMINAL_STATUSES.has(job.record.status)) return "ended";
    this.#undelay(id);
    job.record.error = CANCELED;
    delete job.record.reason;
    this.#store.change(job, "canceled", { type: "canceled", success: false, error: CANCELED });
    return "canceled";
  }

  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    return this.#store.block(options, () => this.#queue.take(consumer, count, this.#store.now()));
  }

  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    return this.#queue.reclaim(consumer, idleMs, count, this.#store.now());
  }

  async renew(consumer: string, deliveries: Delivery[]): Promise<(JobStatus | null)[]> {
    return deliveries.map((delivery) => {
      this.#queue.renew(delivery.entryId, consumer, this.#store.now());
      return this.#store.job(delivery.jobId)?.record.status ?? null;
    });
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
    const job = this.#store.job(delivery.jobId);
    const status = job?.record.status;
    if (!job || (status !== "queued" && status !== "running")) return null;
    job.record.attempts += 1;
    if (status === "queued") this.#store.change(job, "running", { type: "started", success: true });
    return { ...job.record };
  }

  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (!job || TERMINAL_STATUSES.has(job.record.status)) return false;
    const record = job.record;
    delete record.reason;
    if (outcome.type === "failed") {
      record.error = outcome.error;
      if (outcome.reason !== undefined) record.reason = outcome.reason;
      this.#store.change(job, "failed", { ...outcome, success: false });
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
    job.image = image;
    this.#store.change(job, "succeeded", { type: "succeeded", success: true, data });
    return true;
  }

  async retryLater(delivery: Delivery, delayMs: number, reason: string): Promise<boolean> {
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (job?.record.status !== "running") return false;
    Object.assign(job.record, { status: "queued", error: reason, updatedAt: this.#store.iso() });
    this.#store.touch(job);
    this.#undelay(delivery.jobId);
    const timer = this.#store.closed
      ? undefined
      : setTimeout(() => this.promoteDue(), Math.max(0, delayMs));
    this.#delayed.set(delivery.jobId, { due: this.#store.now() + delayMs, timer });
    return true;
  }

  async promoteDue(now: number = this.#store.now()): Promise<number> {
    const due = [...this.#delayed].filter(([, entry]) => entry.due <= now);
    due.sort(([, a], [, b]) => a.due - b.due);
    for (const [jobId] of due) {
      this.#undelay(jobId);
      this.#queue.add({ entryId: this.#store.nextId(), jobId });
    }
    return due.length;
  }

  async deadLetter(delivery: Delivery, reason: string): Promise<void> {
    this.#queue.remove(delivery.entryId);
    const job = this.#store.job(delivery.jobId);
    if (job && !TERMINAL_STATUSES.has(job.record.status)) {
      Object.assign(job.record, { error: PROCESSING_ERROR, reason });
      const event = { type: "failed", success: false, error: PROCESSING_ERROR } as const;
      this.#store.change(job, "failed", event);
    }
    const { jobId, entryId } = delivery;
    this.#dead.push({ jobId, entryId, reason, at: this.#store.iso() });
    if (this.#dead.length > DEAD_MAX) this.#dead.shift();
  }

  async ack(delivery: Delivery): Promise<void> {
    this.#queue.remove(delivery.entryId);
  }

  async history(id: string): Promise<{ owner: string; events: StoredEvent[] } | null> {
    const job = this.#store.job(id);
    return job ? { owner: job.record.owner, events: await this.events(id) } : null;
  }

  async events(id: string, options: { after?: string } = {}): Promise<StoredEvent[]> {
    const job = this.#store.job(id);
    const { after } = options;
    return (job?.events ?? [])
      .filter((event) => after === undefined || compareEventIds(event.eventId, after) > 0)
      .map(({ eventId, notification }) => {
        const copy = structuredClone(notification);
        if (copy.type === "succeeded") {
          copy.data.image = dataUrl(copy.data.mime_type, job?.image ?? "");
        }
        return { eventId, notification: copy };
      });
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
    return this.#dead.map((letter) => ({ ...letter }));
  }

  async close(): Promise<void> {
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#store.close();
  }

  #undelay(jobId: string): void {
    clearTimeout(this.#delayed.get(jobId)?.timer);
    this.#delayed.delete(jobId);
  }
}
