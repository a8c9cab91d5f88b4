/**
 * The logs of the jobs this process created, as its relay saw them grow: a job's `queued` event from its
 * creation, then every feed item of it, in order. A subscriber of such a job is served from here instead
 * of reading the log from the store. It is complete because it is opened before the creation is sent
 * (no feed item of the job can come earlier) while the relay already tails the feed; a job whose feed
 * items do not follow on (a gap, an item trimmed unread) is dropped, as is one that ended, so that its
 * subscribers read the log as before.
 */
import { compareEventIds, isTerminal, type StoredEvent } from "./notifications.ts";
import type { FeedItem, LocalJob } from "../queue/types.ts";

interface Log {
  owner: string;
  /** Non-terminal events, in order, with no gap. */
  events: StoredEvent[];
  /** False until the store answered that it created the job. */
  created: boolean;
  at: number;
}

/** Bounded in jobs and in age; the oldest are dropped first (their subscribers read the log). */
export class Journal {
  #logs = new Map<string, Log>();
  #maxJobs: number;
  #maxAgeMs: number;

  constructor({ maxJobs = 20_000, maxAgeMs = 10 * 60_000 } = {}) {
    this.#maxJobs = maxJobs;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Jobs kept now. */
  get size(): number {
    return this.#logs.size;
  }

  /** Opens the log of a job about to be created here; dropped again unless it is created. */
  opening(job: LocalJob, now = Date.now()): void {
    const log: Log = { owner: job.owner, events: [job.queued], created: false, at: now };
    this.#logs.delete(job.id);
    this.#logs.set(job.id, log);
    for (const [id, old] of this.#logs) {
      if (this.#logs.size <= this.#maxJobs && now - old.at < this.#maxAgeMs) break;
      this.#logs.delete(id);
    }
    job.created.then((created) => {
      if (this.#logs.get(job.id) !== log) return;
      if (created) log.created = true;
      else this.#logs.delete(job.id);
    }, () => this.#logs.delete(job.id));
  }

  /** Adds a feed item to its job's log when it follows on; drops the log on a gap or an end. */
  record(item: FeedItem): void {
    const log = this.#logs.get(item.jobId);
    if (!log) return;
    const last = log.events.at(-1)!.eventId;
    if (compareEventIds(item.eventId, last) <= 0) return;
    if (item.previousId !== last || isTerminal(item.notification.type)) {
      this.#logs.delete(item.jobId);
      return;
    }
    const { eventId, notification, json } = item;
    log.events.push({ eventId, notification, json });
  }

  /** The owner and events of a job created here, when its log is complete; else undefined. */
  replay(jobId: string, now = Date.now()): { owner: string; events: StoredEvent[] } | undefined {
    const log = this.#logs.get(jobId);
    if (!log?.created) return undefined;
    if (now - log.at >= this.#maxAgeMs) {
      this.#logs.delete(jobId);
      return undefined;
    }
    return { owner: log.owner, events: log.events };
  }

  /** Forgets every log (the relay stopped tailing). */
  clear(): void {
    this.#logs.clear();
  }
}
