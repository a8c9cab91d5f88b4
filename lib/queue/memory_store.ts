/** State of the in-memory broker: jobs and their events, the relay feed, stream-style ids, waits. */
import {
  compareEventIds,
  dataUrl,
  isTerminal,
  type JobStatus,
  type Notification,
  type NotificationBody,
  type StoredEvent,
  TERMINAL_STATUSES,
} from "../live/notifications.ts";
import type { BlockOptions, FeedItem, JobPage, JobRecord, ListOptions, NewJob } from "./types.ts";
import { MemoryOutbox, wantsWebhook } from "./memory_webhooks.ts";

/** A job as the in-memory broker keeps it. */
export interface StoredJob {
  record: JobRecord;
  image?: string;
  /** The images after the first, base64, in order. */
  more?: string[];
  /** The reference images of an edit, kept until the job ends. */
  references?: string[];
  events: StoredEvent[];
  /** When it is dropped: Infinity until the job ends, then its end plus the time to live. */
  expiresAt: number;
  /** The stream entry running the job (set by start), as the Redis hash's internal `entry`. */
  entry?: string;
  /** "<entry> <status>" of the write that ended the job through a delivery (Redis: `fin`). */
  fin?: string;
}

/** The fields a new job starts from. */
export type JobFields = NewJob;

/** The object without its undefined properties. */
function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The feed keeps at least FEED_KEEP_MS of items, and at most FEED_MAX. */
const FEED_MAX = 200_000;
const FEED_KEEP_MS = 15 * 60_000;
const SWEEP_MS = 60_000;

/** Jobs that expire, their events, the global feed, stream-style ids and waits for new writes. */
export class MemoryStore {
  #ttlMs: number;
  #clock: () => number;
  #jobs = new Map<string, StoredJob>();
  #feed: { id: string; at: number; item: FeedItem }[] = [];
  /** The id of the newest item dropped from the feed ("0-0" while none was). */
  #feedDropped = "0-0";
  /** Each owner's job ids with their creation order, oldest first (pruned as jobs expire). */
  #byOwner = new Map<string, { id: string; seq: number }[]>();
  #created = 0;
  /** Pending webhook deliveries. */
  readonly outbox: MemoryOutbox = new MemoryOutbox((jobId) => {
    const record = this.job(jobId)?.record;
    if (record) {
      delete record.webhook;
      delete record.webhookEvents;
    }
  });
  /** Pending Socket.IO notices of job ends (kept only once `keepNotices()` was called). */
  notices: MemoryOutbox | null = null;
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
    for (const [owner, list] of this.#byOwner) {
      const kept = list.filter(({ id }) => this.#jobs.has(id));
      if (kept.length === 0) this.#byOwner.delete(owner);
      else this.#byOwner.set(owner, kept);
    }
    return true;
  }

  /** Creates a queued job and appends its `queued` event. */
  create(fields: JobFields): JobRecord {
    const at = this.iso();
    const { id, owner, prompt, model, aspectRatio, webhook, webhookEvents } = fields;
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
    if (webhook !== undefined) record.webhook = webhook;
    if (webhookEvents !== undefined) record.webhookEvents = [...webhookEvents];
    const { n, resolution, quality, references } = fields;
    Object.assign(record, withoutUndefined({ n, resolution, quality }));
    if (references?.length) record.referenceCount = references.length;
    const job: StoredJob = { record, events: [], expiresAt: Infinity };
    if (references?.length) job.references = [...references];
    this.#jobs.set(id, job);
    const owned = this.#byOwner.get(owner) ?? [];
    owned.push({ id, seq: ++this.#created });
    this.#byOwner.set(owner, owned);
    this.append(job, { type: "queued", success: true });
    return record;
  }

  /** Sets the job's status and appends the event that says so; an ended job expires ttl later. */
  change(job: StoredJob, status: JobStatus, event: NotificationBody): void {
    Object.assign(job.record, { status, updatedAt: this.iso() });
    if (TERMINAL_STATUSES.has(status)) {
      job.expiresAt = this.#clock() + this.#ttlMs;
      delete job.references; // needed no more
    }
    this.append(job, event);
  }

  /**
   * Appends an event to the job's log (its id `max(previous + 1, now in ms)`, as in Redis), a pointer
   * to the feed, and a webhook delivery when the job asked for this event type; wakes readers.
   */
  append(job: StoredJob, event: NotificationBody): void {
    const now = this.#clock();
    const notification = { id: job.record.id, ...event, at: this.iso() } as Notification;
    const previousId = job.events.at(-1)?.eventId ?? "0";
    const eventId = String(Math.max(Number(previousId) + 1, Math.floor(now)));
    job.events.push({ eventId, notification });
    const { id: jobId, owner } = job.record;
    const id = this.nextId();
    this.#feed.push({
      id,
      at: now,
      item: { jobId, owner, cursor: id, partition: 0, eventId, previousId, notification },
    });
    this.#trimFeed(now);
    if (wantsWebhook(job.record, event.type)) {
      this.outbox.add({ jobId, type: event.type, eventId, attempt: 0, firstAt: now }, now);
    }
    if (this.notices && isTerminal(event.type)) {
      this.notices.add({ jobId, type: event.type, eventId, attempt: 0, firstAt: now }, now);
    }
    this.wake();
  }

  #trimFeed(now: number): void {
    let drop = 0;
    const overflow = this.#feed.length - FEED_MAX;
    while (
      drop < this.#feed.length &&
      (drop < overflow || (now - this.#feed[drop].at > FEED_KEEP_MS && drop < 1024))
    ) drop += 1;
    if (drop === 0) return;
    this.#feedDropped = this.#feed[drop - 1].id;
    this.#feed.splice(0, drop);
  }

  /** The feed items after `cursor`, or null when items after it were dropped already. */
  feedSince(cursor: string, count: number): { id: string; item: FeedItem }[] | null {
    if (compareEventIds(cursor, this.#feedDropped) < 0) return null;
    // A cursor past every id this store made was never handed out: the client starts over.
    if (compareEventIds(cursor, `${this.#lastMs}-${this.#seq}`) > 0) return null;
    return this.feedAfter(cursor, count);
  }

  /** The owner's jobs, newest first, after the page cursor (a creation number). */
  list(owner: string, { limit, status, cursor }: ListOptions): JobPage {
    const list = this.#byOwner.get(owner) ?? [];
    if (cursor !== undefined && !/^\d{1,15}$/.test(cursor)) {
      throw new RangeError("Cannot list jobs: the cursor is not a page cursor");
    }
    const before = cursor === undefined ? Infinity : Number(cursor);
    const jobs: JobRecord[] = [];
    let last = before;
    for (let i = list.length - 1; i >= 0; i--) {
      const { id, seq } = list[i];
      if (seq >= before) continue;
      const job = this.job(id);
      // An id reused by another owner after this owner's job expired is not this owner's.
      if (!job || job.record.owner !== owner) continue;
      if (status !== undefined && job.record.status !== status) continue;
      if (jobs.length === limit) return { jobs, next: String(last) };
      jobs.push({ ...job.record });
      last = seq;
    }
    return { jobs, next: null };
  }

  /** The job's events after `after` (or all), as copies, a success's image put back as a data URL. */
  events(id: string, after?: string): StoredEvent[] {
    const job = this.job(id);
    return (job?.events ?? [])
      .filter((event) => after === undefined || compareEventIds(event.eventId, after) > 0)
      .map(({ eventId, notification }) => {
        const copy = structuredClone(notification);
        if (copy.type === "succeeded" && job?.image !== undefined) {
          copy.data.image = dataUrl(copy.data.mime_type, job?.image ?? "");
        }
        return { eventId, notification: copy };
      });
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
