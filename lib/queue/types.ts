/** The job broker interface: one contract, a Redis Streams and an in-memory implementation. */
import type { EventType, JobStatus, Notification, StoredEvent } from "../live/notifications.ts";

/** An image kept in an image store: its object key (prefix included), media type and size in bytes. */
export interface ImageObject {
  key: string;
  mimeType: string;
  size: number;
}

/** Pattern of job ids, client-chosen or server-made: 1 to 128 of A-Z a-z 0-9 _ . : - */
export const JOB_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** A job as the HTTP side submits it. */
export interface NewJob {
  id: string;
  owner: string;
  prompt: string;
  model?: string;
  aspectRatio?: string;
  /** Where to POST this job's notifications (Standard Webhooks), and which event types. */
  webhook?: string;
  webhookEvents?: EventType[];
  /** Images to ask for in one provider request (1 to 10; absent: 1). */
  n?: number;
  resolution?: ImageResolution;
  quality?: ImageQuality;
  /**
   * Reference images (1 to 3) that make the job an edit: `data:` URLs, `https://` URLs, or
   * `job:<id>#<index>` naming an image of one of the owner's succeeded jobs. Kept until the job ends.
   */
  references?: string[];
}

/** What the provider charged for a job: images made and their cost in USD ticks (10^10 = 1 USD). */
export interface Usage {
  images: number;
  costUsdTicks: number;
}

/** USD ticks in one US dollar, as xAI counts cost (`usage.cost_in_usd_ticks`). */
export const TICKS_PER_USD = 10_000_000_000;

/** One owner's figures of one UTC day, and the images its quota has reserved. */
export interface UsageDay {
  day: string;
  images: number;
  costUsdTicks: number;
  jobs: { succeeded: number; failed: number; canceled: number };
  /** Images reserved against the quota (asked for, less those given back). */
  reserved: number;
}

/** What one call to Broker.turn did. */
export interface Turn {
  /** Jobs moved from the waiting room onto the jobs stream. */
  moved: number;
  /** Jobs still waiting for a turn in that partition. */
  waiting: number;
  /** Milliseconds until the pace has its next turn (0: now). */
  waitMs: number;
  /** The deployment's current pace in requests/s, null when unpaced. */
  pace: number | null;
}
/** Output resolution xAI takes. */
export type ImageResolution = "1k" | "2k";

/** Output quality xAI takes. */
export type ImageQuality = "low" | "medium" | "high";

/** A job's stored state (no image bytes). */
export interface JobRecord {
  id: string;
  owner: string;
  status: JobStatus;
  prompt: string;
  model?: string;
  aspectRatio?: string;
  createdAt: string;
  updatedAt: string;
  attempts: number;
  /** The user-facing failure message; internal reasons stay in the logs and dead letters. */
  error?: string;
  mimeType?: string;
  revisedPrompt?: string;
  webhook?: string;
  webhookEvents?: EventType[];
  /** What the provider charged, once it answered. */
  usage?: Usage;
  n?: number;
  resolution?: ImageResolution;
  quality?: ImageQuality;
  /** How many reference images the job edits (absent: none, a generation). */
  referenceCount?: number;
  /** How many images a succeeded job stored (what `usage.images` counts); absent before success. */
  imageCount?: number;
  /** The media type of each stored image, in order (the first is `mimeType`). */
  mimeTypes?: string[];
  /** A machine-readable reason of a failure, when there is one (`content_policy`). */
  errorCode?: string;
  /** Where a succeeded job's images are, in order, when an image store keeps them (no bytes here). */
  objects?: ImageObject[];
}

/** A job with its image, base64 without a data URL prefix, when it succeeded. */
export interface JobView extends JobRecord {
  image?: string;
}

/** Limits checked atomically with a submit (0 or absent means no limit), and one hint. */
export interface SubmitLimits {
  /** Submissions one owner may make per one-minute window (replays of an existing id do not count). */
  ratePerMinute?: number;
  /** Jobs one owner may have queued or running at once. */
  maxActivePerOwner?: number;
  /** Entries the jobs stream may hold before submits are refused. */
  maxQueued?: number;
  /**
   * Not a limit, a hint: the server made the id just now (128 random bits). The brokers still check
   * that no job has it, since a resent submit (after a reconnect) must answer the job it made.
   */
  freshId?: boolean;
  /** Images one owner may ask for per UTC day (0 or absent: no cap). */
  maxImagesPerDay?: number;
  /** Images this job asks for (default 1), reserved against that cap. */
  images?: number;
}

/**
 * What submit found: a new job, the one that already had this id, or a refusal by a limit
 * (`rate_limited`: too many submissions this minute, retry after `retryAfterSec`; `owner_busy`: too
 * many active jobs; `backlog`: the queue is full; `quota_exceeded`: the owner's images of the day are
 * used up, retry after `retryAfterSec`), in which case no job was written.
 */
export interface SubmitResult {
  created: boolean;
  job: JobRecord;
  refused?: "rate_limited" | "owner_busy" | "backlog" | "quota_exceeded";
  retryAfterSec?: number;
}

/** One entry taken from the jobs stream by a consumer. */
export interface Delivery {
  /** Stream entry id, used to acknowledge. */
  entryId: string;
  /** Job id the entry names (`Id` for seed entries). */
  jobId: string;
  /** How many times the entry has been delivered, this delivery included. */
  deliveries: number;
  /**
   * The consumer holding this delivery's lease (set by claim and reclaim). start, finish, retryLater,
   * deadLetter and ack write nothing unless this consumer still holds the entry; "" skips the check.
   */
  consumer: string;
  /** Present when another service added the entry with the seed's fields. */
  seed?: { token: string; prompt: string };
  /**
   * The partition whose stream the entry was read from (Redis): every later step (start, renew, ack,
   * finish, retry, park) uses that stream, never one derived again from the id.
   */
  partition?: number;
}

/** The job a seed entry becomes: its owner (the token's `sub`, or "" for nobody) and prompt. */
export interface SeedAdoption {
  owner: string;
  prompt: string;
}

/** One image of a success after the first. */
export interface ExtraImage {
  image: Uint8Array;
  mimeType: string;
}

/** The terminal outcome a worker reports (a success carries the first image's bytes, then the rest). */
export type Outcome =
  | {
    type: "succeeded";
    image: Uint8Array;
    mimeType: string;
    revisedPrompt?: string;
    /** The same image as base64, when the worker has it anyway (spares encoding it again). */
    base64?: string;
    usage?: Usage;
    /** Every image after the first, in order (absent: just the one). */
    more?: ExtraImage[];
    /**
     * The images as the image store keeps them (written before this outcome): the broker records these
     * and none of the bytes.
     */
    objects?: ImageObject[];
  }
  | { type: "failed"; error: string; errorCode?: string; usage?: Usage };

/** A pointer on the relay feed: a job and the event it just got (image omitted). */
export interface FeedItem {
  jobId: string;
  /** The job's owner ("" for a seed entry's job without one). */
  owner: string;
  /**
   * The item's id on its partition's feed. A resume point over every partition is the vector of the
   * last ids seen per partition, joined by commas in partition order (one id when N = 1): that is what
   * `replay` takes, and what a stream of all of an owner's jobs hands out as its event id.
   */
  cursor: string;
  /** The partition whose feed carried the item (0 with one partition). */
  partition: number;
  /** The event's id within its job. */
  eventId: string;
  /** The id of the job's event before this one ("0" for the first): a subscriber that got that one
   * can take this one straight from the feed; any other sees a gap and reads the job's log. */
  previousId: string;
  notification: Notification;
  /** The notification's JSON as stored, when the broker has it (spares serialising it again). */
  json?: string;
}

/** A job this process is about to create: its owner, its `queued` event, and whether it got created. */
export interface LocalJob {
  id: string;
  owner: string;
  queued: StoredEvent;
  /** Resolves once the store answered: true when it created the job (false: refused, or it existed). */
  created: Promise<boolean>;
}

/** One page of an owner's jobs, newest first; `next` continues after the last one (null: no more). */
export interface JobPage {
  jobs: JobRecord[];
  next: string | null;
}

/** Options of Broker.list: at most `limit` jobs, of one status, after a page's `next`. */
export interface ListOptions {
  limit: number;
  status?: JobStatus;
  cursor?: string;
}

/** One webhook delivery to make: a job's event of one type, and how many attempts it has had. */
export interface WebhookTask {
  jobId: string;
  type: EventType;
  /** The event's id in the job's log (part of the stable `webhook-id`). */
  eventId: string;
  /** Attempts made so far (0 before the first). */
  attempt: number;
  /** When the event happened (ms since the epoch): retries stop an hour or more after it. */
  firstAt: number;
}

/**
 * Pending webhook deliveries, kept with the jobs (in Redis for the Redis brokers), so that they survive
 * a restart. A broker adds a task, atomically with the event, when the job has a webhook that asks
 * for that event type.
 */
export interface WebhookOutbox {
  /** Takes up to `limit` due tasks, hiding each for `leaseMs` so that no other process takes it. */
  take(now: number, limit: number, leaseMs: number): Promise<WebhookTask[]>;
  /** The delivery succeeded (or gave up): forget the task. */
  done(task: WebhookTask): Promise<void>;
  /** The attempt failed: try again at `at` (ms since the epoch), with `attempt` counted. */
  retry(task: WebhookTask, at: number): Promise<void>;
  /** The receiver answered 410: drop every pending delivery of this job. */
  stop(jobId: string): Promise<void>;
}

/**
 * Pending terminal notices for the Socket.IO bridge: a task per job end (its event id), added
 * atomically with the terminal event by a broker created with `notices`, and removed only once the
 * bridge saw the emit confirmed; a taken task that is neither done nor retried comes back after its
 * lease (the process died), so a notice goes out at least once.
 */
export type NoticeOutbox = Pick<WebhookOutbox, "take" | "done" | "retry">;

/** Result of a cancel request. */
export type CancelResult = "canceled" | "ended" | "missing";

/** What a lease renewal found per delivery: the job's status, "lost" (another consumer holds the
 * entry, or it is no longer pending), null (the job is gone), or "unknown" (its partition did not
 * answer: the lease is kept as it is). */
export type LeaseStatus = JobStatus | "lost" | "unknown" | null;

/** Options for calls that may block. */
export interface BlockOptions {
  blockMs: number;
  signal?: AbortSignal;
  /**
   * claim and tail: read only this partition (0 ≤ partition < Broker.partitions), blocking on it;
   * absent: every partition (with more than one, a sweep that polls while it waits).
   */
  partition?: number;
}

/** What the safety poll found. */
export interface ProbeResult {
  /** Entries on the jobs streams (and intake) that no consumer took yet. */
  unclaimed: number;
  /** Jobs in the waiting rooms, waiting for a provider turn. */
  waiting: number;
  /** Retries due now, still in the delayed sets. */
  due: number;
  /** Taken entries idle for a lease or longer (their worker stopped). */
  stalled: number;
  /** Entries taken and not acknowledged yet: jobs running somewhere (one could stall). */
  taken: number;
  /** Milliseconds until the next delayed retry is due; -1 when none waits. */
  nextDueMs: number;
  /** The newest id of each partition's feed. */
  feeds: string[];
}

/** The broker every other module talks to; Redis Streams and in-memory implement it. */
export interface Broker {
  readonly kind: "redis" | "upstash" | "memory";
  /** True when claim and tail can wait on the server; false means callers poll with backoff. */
  readonly blocking: boolean;
  /** How many partitions the jobs stream and the relay feed are split into (1 but for Redis). */
  readonly partitions: number;
  /** True when other services' entries arrive on a separate intake stream that moveIntake spreads. */
  readonly separateIntake: boolean;
  /** Prepares streams and groups; safe to call more than once. */
  init(): Promise<void>;
  /** Resolves when the backing store answers; throws BrokerUnavailableError otherwise. */
  ping(): Promise<void>;
  /** Creates the job unless its id exists, appends `queued` and enqueues it, atomically. */
  submit(job: NewJob, limits?: SubmitLimits): Promise<SubmitResult>;
  /** Reads a job; with `image`, also its image. */
  get(id: string, options?: { image?: boolean }): Promise<JobView | null>;
  /** The image of a succeeded job, base64, in one small read; null when it has none (or is gone). */
  image(id: string): Promise<string | null>;
  /** The `index`-th image (0: the first) of a succeeded job, base64; null when it has none. */
  imageAt(id: string, index: number): Promise<string | null>;
  /** The reference images a job edits, as submitted (empty once it ended, or for a generation). */
  references(id: string): Promise<string[]>;
  /** Cancels a queued or running job. */
  cancel(id: string): Promise<CancelResult>;
  /**
   * Takes up to `count` new entries for this consumer, waiting up to `blockMs` for one; first gives
   * that many waiting jobs their turns (see turn), so that a claim finds every job whose turn came.
   */
  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]>;
  /** Takes over entries whose consumer stopped renewing them for `idleMs`. */
  reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]>;
  /**
   * Renews the leases this consumer still holds, atomically per entry (a lease taken over by another
   * consumer is never taken back), and returns what it found for each delivery.
   */
  renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]>;
  /** Removes consumers idle for `idleMs` with nothing pending; returns how many it removed. */
  pruneConsumers(idleMs: number): Promise<number>;
  /** Creates the job of a seed entry; false when a job with that id exists (nothing is written). */
  adoptSeed(delivery: Delivery, adoption: SeedAdoption): Promise<boolean>;
  /**
   * Marks the job running and counts the attempt; null when there is nothing to run, including when
   * another stream entry of the same job is running it (a duplicate entry) or the lease is lost.
   */
  start(delivery: Delivery): Promise<JobRecord | null>;
  /**
   * Stores the terminal outcome once and acknowledges; false when the job had already ended or the
   * delivery's consumer no longer holds its lease (then nothing is written).
   */
  finish(delivery: Delivery, outcome: Outcome): Promise<boolean>;
  /**
   * Puts a running job back in the queue after `delayMs` and acknowledges this delivery; with
   * `giveBack` (the provider was busy) the attempt is not counted and the job waits, with no delay of
   * its own, at the front of its owner's line.
   */
  retryLater(
    delivery: Delivery,
    delayMs: number,
    reason: string,
    options?: { giveBack?: boolean },
  ): Promise<boolean>;
  /** Moves due delayed jobs back to the stream (dropping ones that ended); returns how many moved. */
  promoteDue(now?: number): Promise<number>;
  /**
   * Fails the job with a reason, records a dead letter and acknowledges; true when this call ended the
   * job (false: it had ended already, is gone, or the lease is lost).
   */
  deadLetter(delivery: Delivery, reason: string): Promise<boolean>;
  /** Acknowledges and removes an entry without touching its job (nothing when the lease is lost). */
  ack(delivery: Delivery): Promise<void>;
  /** The job's events after `after` (exclusive), or all of them, images included. */
  events(id: string, options?: { after?: string }): Promise<StoredEvent[]>;
  /** The job's owner and all its events in one read, or null when there is no such job. */
  history(id: string): Promise<{ owner: string; events: StoredEvent[] } | null>;
  /** Reads the relay feed after `cursor` (null: from now), waiting up to `blockMs`. */
  tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }>;
  /**
   * Spreads entries other services added to the intake stream over the partitions' streams (a batch,
   * waiting up to `blockMs` for one); with one partition there is nothing to spread and it returns 0.
   * Entries another consumer took but left unmoved for `idleMs` are taken over.
   */
  moveIntake(consumer: string, options: BlockOptions & { idleMs: number }): Promise<number>;
  /**
   * Calls `listener` with each job this process is about to create, before its creation is sent (so
   * before any of its feed items); optional. Returns a function that stops the calls.
   */
  onCreate?(listener: (job: LocalJob) => void): () => void;
  /** The owner's jobs, newest first (an index that expires with them); `cursor` is a page's `next`. */
  list(owner: string, options: ListOptions): Promise<JobPage>;
  /** How many jobs are ahead of a queued job (an estimate); null when it is not queued. */
  queuePosition(id: string): Promise<number | null>;
  /**
   * Feed items after `cursor` (a vector of per-partition feed ids, as a tail over every partition
   * returns; see FeedItem.cursor), oldest first per partition; null when the cursor is malformed or the
   * feed no longer reaches back that far. At most `limit` items per partition per call; the answer's
   * cursor continues the replay.
   */
  replay(cursor: string, limit: number): Promise<{ cursor: string; items: FeedItem[] } | null>;
  /**
   * Gives provider turns in `partition`: moves up to `want` waiting jobs, owners taking turns, onto the
   * jobs stream as the shared pace allows.
   */
  turn(partition: number, want: number): Promise<Turn>;
  /** The deployment's provider pace in requests/s as this process last saw it (null: unpaced). */
  readonly pace: number | null;
  /** Jobs left in the waiting rooms as this process's last claim saw them (absent: unknown). */
  readonly waiting?: number;
  /**
   * The safety poll of a push-woken broker (Upstash), one script call: what waits that a missed
   * wake-up would leave waiting; absent where claims and the feed block instead.
   */
  probe?(leaseMs: number): Promise<ProbeResult>;
  /** Tells every process that the provider answered 429: no turn for `retryAfterMs`, and a slower pace. */
  throttle(retryAfterMs: number): Promise<void>;
  /**
   * Hands an adopted seed entry's job to the waiting room (acknowledging the entry), so that it takes
   * its owner's turn; false when the lease is lost or the job is no longer queued.
   */
  park(delivery: Delivery): Promise<boolean>;
  /** The owner's usage of one UTC day (`YYYY-MM-DD`). */
  usage(owner: string, day: string): Promise<UsageDay>;
  /** Pending webhook deliveries. */
  readonly webhooks: WebhookOutbox;
  /** Pending Socket.IO notices; absent unless the broker was created with `notices`. */
  readonly notices?: NoticeOutbox;
  /**
   * The store's `maxmemory-policy` when it may evict the service's keys (anything but `noeviction`);
   * null when it cannot, or when the store does not say (managed services that hide CONFIG).
   */
  evictionPolicy?(): Promise<string | null>;
  /** Returns a secret shared by every process on this broker, made on first use. */
  sharedSecret(name: string): Promise<string>;
  /** Closes connections; idempotent. */
  close(): Promise<void>;
}
