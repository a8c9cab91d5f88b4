/**
 * One relay per process: a single reader tails the broker's feed and fans events out to this
 * process's SSE and WebSocket subscribers. Routes only register subscribers here.
 */
import type { Logger } from "@logtape/logtape";
import { httpErrors } from "../errors.ts";
import { Wakeable } from "../pause.ts";
import { tailFeeds } from "./feed_tail.ts";
import { Journal } from "./journal.ts";
import type { EndReason, Entry, JobSubs, Subscriber, Subscription } from "./relay_types.ts";
import { compareEventIds, isTerminal, type StoredEvent, withImage } from "./notifications.ts";
import type { Broker, FeedItem } from "../queue/types.ts";

export type { EndReason, Subscriber, Subscription } from "./relay_types.ts";

function nextId(id: string): string | null {
  if (!/^\d+$/.test(id)) return null;
  return id.length < 16 ? String(Number(id) + 1) : String(BigInt(id) + 1n);
}

/** Tails the feed and delivers each job's events to its local subscribers with no gap and no duplicate. */
export class Relay {
  #broker: Broker;
  #log: Logger;
  #blockMs: number;
  #idleMaxMs: number;
  #jobs = new Map<string, JobSubs>();
  #watchers = new Set<(item: FeedItem) => void>();
  #stop = new AbortController();
  #loop: Promise<void> | null = null;
  #ready: Promise<void> | null = null;
  /** Polling pauses end early when a subscriber arrives, so polling speeds up at once. */
  #idle = new Wakeable();
  #closing: Promise<void> | null = null;
  #resync: ReturnType<typeof setInterval> | undefined;
  #resyncMs: number;
  /** The logs of jobs created here, and whether the feed is tailed (only then are they complete). */
  #journal = new Journal();
  #tailing = false;
  #unwatch: (() => void) | undefined;

  constructor(
    { broker, log, blockMs = 5_000, idleMaxMs = 8_000, resyncMs = 30_000 }: {
      broker: Broker;
      log: Logger;
      blockMs?: number;
      /** Longest pause between polls of a non-blocking broker with no subscribers here. */
      idleMaxMs?: number;
      /**
       * How often every watched job's log is read again, whatever the feed said: a safety net for a
       * feed item this reader never saw (trimmed while it lagged), and the read that ends the
       * subscribers of a job that is gone (expired, or lost with its store), so none waits forever.
       */
      resyncMs?: number;
    },
  ) {
    this.#resyncMs = resyncMs;
    this.#broker = broker;
    this.#log = log;
    this.#blockMs = blockMs;
    this.#idleMaxMs = idleMaxMs;
  }

  /** Number of live subscribers in this process. */
  get size(): number {
    let n = 0;
    for (const job of this.#jobs.values()) n += job.entries.size;
    return n;
  }

  /**
   * Starts tailing the feed; resolves once the reader has its starting cursor (see tailFeeds: one
   * reader per partition's feed over a blocking broker with N > 1, else one).
   */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    // Jobs created here once the feed is tailed: their subscribers are served from the journal.
    this.#unwatch = this.#broker.onCreate?.((job) => this.#tailing && this.#journal.opening(job));
    const feeds = tailFeeds({
      broker: this.#broker,
      log: this.#log,
      blockMs: this.#blockMs,
      idleMaxMs: this.#idleMaxMs,
      signal: this.#stop.signal,
      idle: this.#idle,
      busy: () => this.#jobs.size > 0,
      onItems: (items) => this.#dispatch(items),
      // After an outage, catch every job up from its log.
      onFailure: () => this.#resyncAll(),
    });
    this.#ready = feeds.ready.then(() => void (this.#tailing = !this.#stop.signal.aborted));
    this.#loop = feeds.done;
    this.#resync = setInterval(() => this.#resyncAll(), this.#resyncMs);
    return this.#ready;
  }

  #resyncAll(): void {
    for (const jobId of this.#jobs.keys()) void this.#read(jobId);
  }

  /** Calls `fn` with every feed item this process reads (for example, to stop a canceled job at once). */
  watch(fn: (item: FeedItem) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  #dispatch(items: FeedItem[]): void {
    const stale = new Set<string>();
    /** Jobs whose next event is a success: all they lack is its image. */
    const images = new Map<string, FeedItem>();
    for (const item of items) {
      for (const watcher of this.#watchers) watcher(item);
      this.#journal.record(item);
      const job = this.#jobs.get(item.jobId);
      if (!job || stale.has(item.jobId)) continue;
      const next = this.#nextFor(job, item);
      if (next === "stale" || images.has(item.jobId)) {
        stale.add(item.jobId);
        images.delete(item.jobId);
      } else if (next.length === 0) continue;
      else if (item.notification.type === "succeeded") images.set(item.jobId, item);
      else {
        // The next event, without an image: straight from the feed, one object for every subscriber.
        const event = { eventId: item.eventId, notification: item.notification, json: item.json };
        for (const entry of next) this.#deliver(entry, event, item.jobId);
      }
    }
    // One read of each job serves every local subscriber of that job.
    for (const jobId of stale) void this.#read(jobId);
    for (const [jobId, item] of images) void this.#read(jobId, item);
  }

  /**
   * The subscribers that `item` is the next event of; "stale" when any subscriber is not ready, a read
   * is under way, or one of them would see a gap (then the job's log is read instead).
   */
  #nextFor(job: JobSubs, item: FeedItem): Entry[] | "stale" {
    if (job.reading) return "stale";
    const next: Entry[] = [];
    for (const entry of job.entries) {
      if (!entry.ready) return "stale";
      if (compareEventIds(item.eventId, entry.lastSent) <= 0) continue;
      if (nextId(entry.lastSent) !== item.eventId) return "stale";
      next.push(entry);
    }
    return next;
  }

  /** Sends the event unless the subscriber has it; ends the subscription after a terminal event. */
  #deliver(entry: Entry, event: StoredEvent, jobId: string): void {
    if (entry.closed || compareEventIds(event.eventId, entry.lastSent) <= 0) return;
    entry.lastSent = event.eventId;
    entry.sink.event(event);
    if (isTerminal(event.notification.type)) this.#remove(entry, "terminal", jobId);
  }

  /**
   * Delivers a success from the feed with its image, read alone (or kept by this process, which just
   * stored it); true when every subscriber got it, false when some still lack events (read the log).
   */
  async #withImage(job: JobSubs, jobId: string, item: FeedItem): Promise<boolean> {
    const image = await this.#broker.image(jobId);
    if (image === null || item.notification.type !== "succeeded") return false;
    const event = withImage(item, image);
    let complete = true;
    for (const entry of [...job.entries]) {
      if (entry.ready && nextId(entry.lastSent) === item.eventId) {
        this.#deliver(entry, event, jobId);
      } else if (!entry.ready || compareEventIds(item.eventId, entry.lastSent) > 0) {
        complete = false;
      }
    }
    return complete;
  }

  /**
   * Reads the job's log once and delivers what each subscriber lacks; reads again if more came meanwhile.
   * With `next`, a success that is every subscriber's next event, only its image is read first.
   */
  #read(jobId: string, next?: FeedItem): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job) return Promise.resolve();
    if (job.reading) {
      job.again = true;
      return job.reading;
    }
    job.reading = (async () => {
      try {
        job.again = false;
        const done = next ? await this.#withImage(job, jobId, next).catch(() => false) : false;
        if (done && !job.again) return;
        do {
          job.again = false;
          const history = await this.#broker.history(jobId);
          const events = history?.events ?? [];
          const ended = events.length > 0 && isTerminal(events.at(-1)!.notification.type);
          for (const entry of [...job.entries]) {
            if (entry.owner !== undefined && !entry.ready && history?.owner !== entry.owner) {
              entry.refused = true;
              this.#remove(entry, "closed", jobId);
              continue;
            }
            entry.ready = true;
            // No job any more (expired, or its store came back empty): no event will ever come.
            if (history === null) {
              this.#remove(entry, "gone", jobId);
              continue;
            }
            for (const event of events) this.#deliver(entry, event, jobId);
            if (ended) this.#remove(entry, "terminal", jobId);
          }
        } while (job.again && job.entries.size > 0);
      } catch (error) {
        this.#log.warn("Cannot read events of job {id}: {error}", {
          id: jobId,
          error: String(error),
        });
      } finally {
        job.reading = null;
        if (job.entries.size === 0 && this.#jobs.get(jobId) === job) this.#jobs.delete(jobId);
      }
    })();
    return job.reading;
  }

  /**
   * Registers a subscriber, replays the job's events after `after` (or all), then goes live; events
   * that arrive during the replay are read again afterwards, so nothing is missed or repeated. With
   * `owner`, the replay's read also checks ownership and throws 404 for anyone else's job.
   */
  async subscribe(
    jobId: string,
    sink: Subscriber,
    after?: string,
    { owner }: { owner?: string } = {},
  ): Promise<Subscription> {
    const entry: Entry = { sink, lastSent: after ?? "0", ready: false, closed: false, owner };
    let job = this.#jobs.get(jobId);
    if (!job) this.#jobs.set(jobId, job = { entries: new Set(), reading: null, again: false });
    job.entries.add(entry);
    this.#idle.wake();
    // A job created here is replayed from the journal (no read), unless a read is under way.
    const known = job.reading ? undefined : this.#journal.replay(jobId);
    if (!known) await this.#read(jobId);
    else if (owner !== undefined && known.owner !== owner) {
      entry.refused = true;
      this.#remove(entry, "closed", jobId);
    } else {
      entry.ready = true;
      for (const event of known.events) this.#deliver(entry, event, jobId);
    }
    if (entry.refused) throw httpErrors.notFound();
    return { close: () => this.#remove(entry, "closed", jobId) };
  }

  #remove(entry: Entry, reason: EndReason, jobId: string): void {
    if (entry.closed) return;
    entry.closed = true;
    const job = this.#jobs.get(jobId);
    if (job?.entries.delete(entry) && job.entries.size === 0 && !job.reading) {
      this.#jobs.delete(jobId);
    }
    if (!entry.refused) entry.sink.done?.(reason);
  }

  /** Stops the reader and ends every subscription; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#tailing = false;
      this.#unwatch?.();
      this.#journal.clear();
      clearInterval(this.#resync);
      for (const [jobId, job] of [...this.#jobs]) {
        for (const entry of [...job.entries]) this.#remove(entry, "closed", jobId);
      }
      this.#jobs.clear();
      await this.#loop?.catch(() => {});
    })();
    return this.#closing;
  }
}
