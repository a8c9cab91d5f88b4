/** State of the in-memory broker: jobs and their events, the relay feed, the jobs stream, waits. */
import {
  compareEventIds,
  type JobStatus,
  type Notification,
  type NotificationBody,
  type StoredEvent,
  TERMINAL_STATUSES,
} from "../live/notifications.ts";
import type { BlockOptions, Delivery, FeedItem, JobRecord } from "./types.ts";

/** A job as the in-memory broker keeps it. */
export interface StoredJob {
  record: JobRecord;
  image?: string;
  events: StoredEvent[];
  /** When it is dropped: Infinity until the job ends, then its end plus the time to live. */
  expiresAt: number;
  /** The stream entry running the job (set by start), as the Redis hash's internal `entry`. */
  entry?: string;
}

/** The fields a new job starts from. */
export type JobFields = Pick<JobRecord, "id" | "owner" | "prompt" | "model" | "aspectRatio">;

const FEED_MAX = 10_000;
const SWEEP_MS = 60_000;

/** Jobs that expire, their events, the global feed, stream-style ids and waits for new writes. */
export class MemoryStore {
  #ttlMs: number;
  #clock: () => number;
  #jobs = new Map<string, StoredJob>();
  #feed: { id: string; item: FeedItem }[] = [];
  #wakers = new Set<() => void>();
  #lastMs = 0;
  #seq = 0;
  #lastSweep = 0;
  #closed = false;

  constructor(ttlMs: number, clock: () => number) {
    this.#ttlMs = ttlMs;
    this.#clock = clock;
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The current time in epoch milliseconds. */
  now(): number {
    return this.#clock();
  }

  /** The current time as an ISO string. */
  iso(): string {
    return new Date(this.#clock()).toISOString();
  }

  /** A new `<ms>-<seq>` id, greater than every id made before. */
  nextId(): string {
    const ms = Math.max(Math.floor(this.#clock()), this.#lastMs);
    this.#seq = ms === this.#lastMs ? this.#seq + 1 : 0;
    this.#lastMs = ms;
    return `${ms}-${this.#seq}`;
  }

  /** The job with this id, unless it is absent or expired (then it is dropped). */
  job(id: string): StoredJob | undefined {
    const job = this.#jobs.get(id);
    if (job && job.expiresAt <= this.#clock()) this.#jobs.delete(id);
    return this.#jobs.get(id);
  }

  /** True when the job ended or is gone. */
  ended(id: string): boolean {
    const status = this.job(id)?.record.status;
    return !status || TERMINAL_STATUSES.has(status);
  }

  /** Drops expired jobs, at most once a minute; true when it swept. */
  sweep(): boolean {
    const now = this.#clock();
    if (now - this.#lastSweep < SWEEP_MS) return false;
    this.#lastSweep = now;
    for (const [id, job] of this.#jobs) if (job.expiresAt <= now) this.#jobs.delete(id);
    return true;
  }

  /** Creates a queued job and appends its `queued` event. */
  create(fields: JobFields): JobRecord {
    const at = this.iso();
    const { id, owner, prompt, model, aspectRatio } = fields;
    const record: JobRecord = {
      id,
      owner,
      status: "queued",
      prompt,
      createdAt: at,
      updatedAt: at,
      attempts: 0,
    };
    if (model !== undefined) record.model = model;
    if (aspectRatio !== undefined) record.aspectRatio = aspectRatio;
    const job: StoredJob = { record, events: [], expiresAt: Infinity };
    this.#jobs.set(id, job);
    this.append(job, { type: "queued", success: true });
    return record;
  }

  /** Sets the job's status and appends the event that says so; an ended job expires ttl later. */
  change(job: StoredJob, status: JobStatus, event: NotificationBody): void {
    Object.assign(job.record, { status, updatedAt: this.iso() });
    if (TERMINAL_STATUSES.has(status)) job.expiresAt = this.#clock() + this.#ttlMs;
    this.append(job, event);
  }

  /**
   * Appends an event to the job's log (event ids count 1, 2, 3… per job, as in Redis) and, except for
   * `queued` (nobody can be subscribed before the job exists), a pointer to the feed; wakes readers.
   */
  append(job: StoredJob, event: NotificationBody): void {
    const notification = { id: job.record.id, ...event, at: this.iso() } as Notification;
    const eventId = String(job.events.length + 1);
    job.events.push({ eventId, notification });
    if (event.type === "queued") return this.wake();
    this.#feed.push({ id: this.nextId(), item: { jobId: job.record.id, eventId, notification } });
    if (this.#feed.length > FEED_MAX) this.#feed.splice(0, this.#feed.length - FEED_MAX);
    this.wake();
  }

  /** The id of the newest feed item, or `0-0`. */
  feedHead(): string {
    return this.#feed.at(-1)?.id ?? "0-0";
  }

  /** Up to `count` feed items after `cursor`, oldest first, with their feed ids. */
  feedAfter(cursor: string, count: number): { id: string; item: FeedItem }[] {
    let start = this.#feed.length;
    while (start > 0 && compareEventIds(this.#feed[start - 1].id, cursor) > 0) start -= 1;
    return this.#feed.slice(start, start + count);
  }

  /** Calls `take` until it returns something, waiting for writes up to blockMs or the abort. */
  async block<T>(options: BlockOptions, take: () => T[]): Promise<T[]> {
    const deadline = performance.now() + options.blockMs;
    while (!this.#closed) {
      const items = take();
      const left = deadline - performance.now();
      if (items.length > 0 || left <= 0 || options.signal?.aborted) return items;
      await this.#nextWrite(left, options.signal);
    }
    return [];
  }

  /** Wakes every waiting reader so it looks again. */
  wake(): void {
    for (const wake of [...this.#wakers]) wake();
  }

  /** Ends every wait; later blocking reads return nothing. */
  close(): void {
    this.#closed = true;
    this.wake();
  }

  #nextWrite(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done);
      this.#wakers.add(done);
    });
  }
}

/** An entry of the jobs stream: a job id, with the seed's fields when another service added it. */
export interface Entry {
  entryId: string;
  jobId: string;
  seed?: { token: string; prompt: string };
}

interface Pending extends Entry {
  consumer: string;
  deliveries: number;
  lastAt: number;
}

/**
 * The jobs stream of one consumer group: new entries in order, then pending ones (each held by one
 * consumer) until acknowledged, and the consumers seen, as Redis keeps them.
 */
export class EntryQueue {
  #fresh: Entry[] = [];
  #pending = new Map<string, Pending>();
  /**
   * Consumer name -> when it last got entries or renewed one (XINFO CONSUMERS' idle). As in Redis 7.0, a
   * consumer exists once it got an entry: a read or a reclaim that finds nothing does not create it.
   */
  #consumers = new Map<string, number>();
  /** Where the next reclaim resumes (XAUTOCLAIM's cursor). */
  #cursor = "0-0";
  #onAdd: () => void;

  constructor(onAdd: () => void) {
    this.#onAdd = onAdd;
  }

  /** Entries in the stream, delivered or not (as XLEN counts them). */
  get size(): number {
    return this.#fresh.length + this.#pending.size;
  }

  /** Appends a new entry. */
  add(entry: Entry): void {
    this.#fresh.push(entry);
    this.#onAdd();
  }

  /** Delivers up to `count` new entries to the consumer, oldest first. */
  take(consumer: string, count: number, now: number): Delivery[] {
    const taken = this.#fresh.splice(0, count).map((entry) => {
      const pending = { ...entry, consumer, deliveries: 1, lastAt: now };
      this.#pending.set(entry.entryId, pending);
      return toDelivery(pending);
    });
    if (taken.length > 0) this.#consumers.set(consumer, now);
    return taken;
  }

  /**
   * Moves up to `count` pending entries idle for at least `idleMs` to the consumer, scanning in id order
   * from where the previous call stopped (at most count × 10 entries per call), as XAUTOCLAIM does.
   */
  reclaim(consumer: string, idleMs: number, count: number, now: number): Delivery[] {
    const order = [...this.#pending.values()]
      .filter((p) => compareEventIds(p.entryId, this.#cursor) >= 0)
      .sort((a, b) => compareEventIds(a.entryId, b.entryId));
    const taken: Delivery[] = [];
    let attempts = count * 10;
    let next = 0;
    for (; next < order.length && attempts > 0 && taken.length < count; next++, attempts--) {
      const pending = order[next];
      if (idleMs > 0 && now - pending.lastAt < idleMs) continue;
      Object.assign(pending, { consumer, deliveries: pending.deliveries + 1, lastAt: now });
      taken.push(toDelivery(pending));
    }
    this.#cursor = order[next]?.entryId ?? "0-0";
    if (taken.length > 0) this.#consumers.set(consumer, now);
    return taken;
  }

  /** True when the entry is pending and held by this consumer. */
  holds(entryId: string, consumer: string): boolean {
    return this.#pending.get(entryId)?.consumer === consumer;
  }

  /** Resets the idle time of an entry this consumer holds; false when it does not hold it. */
  renew(entryId: string, consumer: string, now: number): boolean {
    const pending = this.#pending.get(entryId);
    if (pending?.consumer !== consumer) return false;
    pending.lastAt = now;
    this.#consumers.set(consumer, now);
    return true;
  }

  /** Acknowledges and deletes an entry, delivered or not. */
  remove(entryId: string): void {
    this.#pending.delete(entryId);
    const index = this.#fresh.findIndex((entry) => entry.entryId === entryId);
    if (index >= 0) this.#fresh.splice(index, 1);
  }

  /** Forgets consumers idle for `idleMs` that hold nothing; returns how many it forgot. */
  prune(idleMs: number, now: number): number {
    const holding = new Set([...this.#pending.values()].map((p) => p.consumer));
    let removed = 0;
    for (const [consumer, seenAt] of this.#consumers) {
      if (holding.has(consumer) || now - seenAt < idleMs) continue;
      this.#consumers.delete(consumer);
      removed += 1;
    }
    return removed;
  }
}

function toDelivery(entry: Pending): Delivery {
  const { entryId, jobId, deliveries, consumer, seed } = entry;
  const delivery: Delivery = { entryId, jobId, deliveries, consumer };
  return seed ? { ...delivery, seed: { ...seed } } : delivery;
}
