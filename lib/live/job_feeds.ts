/**
 * The relay's subscribers of one job each: every job's events in order, with no gap and no duplicate,
 * straight from the feed when they follow on, else from one read of the job's log that serves every
 * subscriber of that job in this process.
 */
import type { Logger } from "@logtape/logtape";
import { httpErrors } from "../errors.ts";
import type { Journal } from "./journal.ts";
import type { EndReason, Entry, JobSubs, Subscriber, Subscription } from "./relay_types.ts";
import { compareEventIds, isTerminal, type StoredEvent, withImage } from "./notifications.ts";
import type { Broker, FeedItem } from "../queue/types.ts";

/** The subscribers of single jobs in one process. */
export class JobFeeds {
  #jobs = new Map<string, JobSubs>();
  #broker: Broker;
  #log: Logger;
  /** The logs of jobs created here (complete only while the relay tails the feed). */
  #journal: Journal;

  constructor({ broker, log, journal }: { broker: Broker; log: Logger; journal: Journal }) {
    this.#broker = broker;
    this.#log = log;
    this.#journal = journal;
  }

  /** Live subscribers. */
  get size(): number {
    let n = 0;
    for (const job of this.#jobs.values()) n += job.entries.size;
    return n;
  }

  /** True while some job has a subscriber here. */
  get active(): boolean {
    return this.#jobs.size > 0;
  }

  /** Reads every watched job's log again (after an outage, and now and then as a safety net). */
  resync(): void {
    for (const jobId of this.#jobs.keys()) void this.#read(jobId);
  }

  /**
   * Hands over one batch of feed items: each job's next event goes straight to its subscribers; a job
   * where anyone would see a gap has its log read instead. `imageOf` reads a success's image, once.
   */
  dispatch(items: FeedItem[], imageOf: (jobId: string) => Promise<string | null>): void {
    /** Jobs to read the log of, and the last event the feed showed of each. */
    const stale = new Map<string, string>();
    /** Jobs whose next event is a success: all they lack is its image. */
    const images = new Map<string, FeedItem>();
    for (const item of items) {
      const job = this.#jobs.get(item.jobId);
      if (!job) continue;
      if (stale.has(item.jobId)) {
        stale.set(item.jobId, item.eventId);
        continue;
      }
      const next = this.#nextFor(job, item);
      if (next === "stale" || images.has(item.jobId)) {
        stale.set(item.jobId, item.eventId);
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
    for (const [jobId, upTo] of stale) void this.#read(jobId, { upTo });
    for (const [jobId, item] of images) {
      void this.#read(jobId, { next: item, image: imageOf(jobId), upTo: item.eventId });
    }
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
      if (item.previousId !== entry.lastSent) return "stale";
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
  async #withImage(
    job: JobSubs,
    jobId: string,
    item: FeedItem,
    read: Promise<string | null>,
  ): Promise<boolean> {
    const image = await read;
    if (image === null || item.notification.type !== "succeeded") return false;
    const event = withImage(item, image);
    let complete = true;
    for (const entry of [...job.entries]) {
      if (entry.ready && item.previousId === entry.lastSent) {
        this.#deliver(entry, event, jobId);
      } else if (!entry.ready || compareEventIds(item.eventId, entry.lastSent) > 0) {
        complete = false;
      }
    }
    return complete;
  }

  /**
   * True when the read under way must read again: asked to without a reason, or some subscriber still
   * lacks the last event the feed showed meanwhile (a read that already returned it is enough).
   */
  #readAgain(job: JobSubs): boolean {
    if (!job.again) return false;
    job.again = false;
    const upTo = job.upTo;
    if (upTo === null) return true;
    for (const entry of job.entries) if (compareEventIds(entry.lastSent, upTo) < 0) return true;
    return false;
  }

  /**
   * Reads the job's log once and delivers what each subscriber lacks; reads again if more came meanwhile.
   * With `next`, a success that is every subscriber's next event, only its image is read first. `upTo`
   * is the last event of the job the feed showed (unknown: the read repeats whatever it returns).
   */
  #read(
    jobId: string,
    { next, image, upTo = null }: {
      next?: FeedItem;
      image?: Promise<string | null>;
      upTo?: string | null;
    } = {},
  ): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job) return Promise.resolve();
    if (job.reading) {
      const known = job.again ? job.upTo : upTo;
      job.upTo = known === null || upTo === null
        ? null
        : compareEventIds(known, upTo) >= 0
        ? known
        : upTo;
      job.again = true;
      return job.reading;
    }
    job.reading = (async () => {
      try {
        job.again = false;
        const done = next && image
          ? await this.#withImage(job, jobId, next, image).catch(() => false)
          : false;
        if (done && !this.#readAgain(job)) return;
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
        } while (job.entries.size > 0 && this.#readAgain(job));
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
    if (!job) {
      job = { entries: new Set(), reading: null, again: false, upTo: null };
      this.#jobs.set(jobId, job);
    }
    job.entries.add(entry);
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

  /** Ends every subscription (the relay is closing). */
  closeAll(): void {
    for (const [jobId, job] of [...this.#jobs]) {
      for (const entry of [...job.entries]) this.#remove(entry, "closed", jobId);
    }
    this.#jobs.clear();
  }
}
