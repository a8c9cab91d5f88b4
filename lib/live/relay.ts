/**
 * One relay per process: a single reader tails the broker's feed and fans events out to this
 * process's SSE and WebSocket subscribers. Routes only register subscribers here.
 */
import type { Logger } from "@logtape/logtape";
import { httpErrors } from "../errors.ts";
import { Wakeable } from "../pause.ts";
import { compareEventIds, isTerminal, type StoredEvent } from "./notifications.ts";
import type { Broker, FeedItem } from "../queue/types.ts";

/**
 * Why a subscription ended: the terminal event was delivered, the job is gone (expired or lost with
 * its store) so no event will come, or it was closed (by the subscriber or the relay shutting down).
 */
export type EndReason = "terminal" | "gone" | "closed";

/** Receives a job's events in order; `done` is called once after the terminal event, when the job is
 * gone, or on close. */
export interface Subscriber {
  event(event: StoredEvent): void;
  done?(reason: EndReason): void;
}

/** A live registration; `close()` stops delivery and is idempotent. */
export interface Subscription {
  close(): void;
}

interface Entry {
  sink: Subscriber;
  lastSent: string;
  /** False until the entry's replay has been read. */
  ready: boolean;
  closed: boolean;
  /** When set, the first read must show this owner, or the subscription is refused as not found. */
  owner?: string;
  refused?: boolean;
}

/** The local subscribers of one job, and the single read of its log that serves them all. */
interface JobSubs {
  entries: Set<Entry>;
  reading: Promise<void> | null;
  again: boolean;
}

function nextId(id: string): string | null {
  return /^\d+$/.test(id) ? String(BigInt(id) + 1n) : null;
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
   * Starts tailing the feed; resolves once the reader has its starting cursor. With N > 1 partitions
   * over a blocking broker, one reader per partition's feed, each blocking on its own connection;
   * otherwise one reader (over REST, one pipelined poll of every feed per tick).
   */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    const { partitions, blocking } = this.#broker;
    const split = blocking && partitions > 1;
    const parts = split ? Array.from({ length: partitions }, (_, p) => p) : [undefined];
    const readies = parts.map(() => Promise.withResolvers<void>());
    this.#ready = Promise.all(readies.map((r) => r.promise)).then(() => {});
    this.#loop = Promise.all(parts.map((p, i) => this.#run(readies[i].resolve, p))).then(() => {});
    this.#resync = setInterval(() => {
      for (const jobId of this.#jobs.keys()) void this.#read(jobId);
    }, this.#resyncMs);
    return this.#ready;
  }

  async #run(ready: () => void, partition: number | undefined): Promise<void> {
    let cursor: string | null = null;
    let idleMs = 0;
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      try {
        const result = await this.#broker.tail(cursor, {
          blockMs: this.#blockMs,
          signal: this.#stop.signal,
          partition,
        });
        if (cursor === null) ready();
        cursor = result.cursor;
        failures = 0;
        this.#dispatch(result.items);
        if (!this.#broker.blocking) {
          idleMs = result.items.length > 0
            ? 0
            : Math.min(Math.max(100, idleMs * 2), this.#idleMaxMs);
          if (idleMs > 0) {
            await this.#idle.sleep(
              this.size > 0 ? Math.min(idleMs, 500) : idleMs,
              this.#stop.signal,
            );
          }
        }
      } catch (error) {
        failures++;
        this.#log.warn("Cannot read the relay feed: {error}", { error: String(error) });
        await this.#idle.sleep(Math.min(100 * 2 ** failures, 5_000), this.#stop.signal);
        // After an outage, catch every job up from its log.
        for (const jobId of this.#jobs.keys()) void this.#read(jobId);
      }
    }
    ready();
  }

  /** Calls `fn` with every feed item this process reads (for example, to stop a canceled job at once). */
  watch(fn: (item: FeedItem) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  #dispatch(items: FeedItem[]): void {
    const stale = new Set<string>();
    for (const item of items) {
      for (const watcher of this.#watchers) watcher(item);
      const job = this.#jobs.get(item.jobId);
      if (!job) continue;
      for (const entry of job.entries) {
        if (!entry.ready || job.reading || stale.has(item.jobId)) {
          stale.add(item.jobId);
        } else if (compareEventIds(item.eventId, entry.lastSent) > 0) {
          // The next event, without an image: straight from the feed. Anything else: read the log.
          const direct = nextId(entry.lastSent) === item.eventId &&
            item.notification.type !== "succeeded";
          if (direct) {
            this.#deliver(entry, { eventId: item.eventId, notification: item.notification });
          } else stale.add(item.jobId);
        }
      }
    }
    // One read of each job's log serves every local subscriber of that job.
    for (const jobId of stale) void this.#read(jobId);
  }

  #deliver(entry: Entry, event: StoredEvent): void {
    if (entry.closed || compareEventIds(event.eventId, entry.lastSent) <= 0) return;
    entry.lastSent = event.eventId;
    entry.sink.event(event);
  }

  /** Reads the job's log once and delivers what each subscriber lacks; reads again if more came meanwhile. */
  #read(jobId: string): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job) return Promise.resolve();
    if (job.reading) {
      job.again = true;
      return job.reading;
    }
    job.reading = (async () => {
      try {
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
            for (const event of events) this.#deliver(entry, event);
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
    await this.#read(jobId);
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
