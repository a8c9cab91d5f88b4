/**
 * One relay per process: a single reader tails the broker's feed and fans events out to this
 * process's SSE and WebSocket subscribers. Routes only register subscribers here.
 */
import type { Logger } from "@logtape/logtape";
import { Wakeable } from "../pause.ts";
import { tailFeeds } from "./feed_tail.ts";
import { JobFeeds } from "./job_feeds.ts";
import { Journal } from "./journal.ts";
import { OwnerFeeds, type OwnerSubscriber } from "./owner_feed.ts";
import type { Subscriber, Subscription } from "./relay_types.ts";
import type { Broker, FeedItem } from "../queue/types.ts";
import type { Wakeups } from "./wakeups.ts";

export type { EndReason, Subscriber, Subscription } from "./relay_types.ts";
export type { OwnerEvent, OwnerSubscriber } from "./owner_feed.ts";

/** Tails the feed and delivers each job's events to its local subscribers with no gap and no duplicate. */
export class Relay {
  #broker: Broker;
  #log: Logger;
  #blockMs: number;
  #idleMaxMs: number;
  /** Subscribers of one job each. */
  #jobs: JobFeeds;
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
  /** Streams of all of an owner's jobs, and this reader's position on each partition's feed. */
  #owners: OwnerFeeds;
  #positions: string[];
  #wakeups: Wakeups | undefined;
  #unlisten: (() => void) | undefined;

  constructor(
    { broker, log, blockMs = 5_000, idleMaxMs = 8_000, resyncMs = 30_000, wakeups }: {
      broker: Broker;
      log: Logger;
      /** Push wake-ups (Upstash): the reader waits for one instead of polling. */
      wakeups?: Wakeups;
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
    this.#wakeups = wakeups;
    this.#broker = broker;
    this.#log = log;
    this.#blockMs = blockMs;
    this.#idleMaxMs = idleMaxMs;
    this.#jobs = new JobFeeds({ broker, log, journal: this.#journal });
    this.#positions = Array.from({ length: broker.partitions }, () => "0-0");
    this.#owners = new OwnerFeeds({ broker, log, positions: () => this.#positions });
  }

  /** Number of live subscribers in this process (of one job or of all of an owner's jobs). */
  get size(): number {
    return this.#jobs.size + this.#owners.size;
  }

  /**
   * Starts tailing the feed; resolves once the reader has its starting cursor (see tailFeeds: one
   * reader per partition's feed over a blocking broker with N > 1, else one).
   */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    // Jobs created here once the feed is tailed: their subscribers are served from the journal.
    this.#unwatch = this.#broker.onCreate?.((job) => this.#tailing && this.#journal.opening(job));
    // A feed item: read it now when someone here listens (a cancel always: the worker stops its
    // job); otherwise the next subscriber, or the safety poll, reads from where this reader stopped.
    this.#unlisten = this.#wakeups?.listen((kind) => {
      const listened = this.#jobs.active || this.#owners.size > 0 || this.#watchers.size > 0;
      const feedItem = kind === "j" || kind === "f";
      if (kind === "c" || kind === "p" || (feedItem && listened)) this.#idle.wake();
    });
    const feeds = tailFeeds({
      broker: this.#broker,
      log: this.#log,
      blockMs: this.#blockMs,
      idleMaxMs: this.#idleMaxMs,
      signal: this.#stop.signal,
      idle: this.#idle,
      busy: () => this.#jobs.active || this.#owners.size > 0,
      pushed: () => this.#wakeups?.live ?? false,
      onItems: (items, cursor, partition) => {
        this.#dispatch(items);
        this.#advance(cursor, partition);
      },
      // After an outage, catch every job up from its log.
      onFailure: () => this.#jobs.resync(),
    });
    this.#ready = feeds.ready.then(() => void (this.#tailing = !this.#stop.signal.aborted));
    this.#loop = feeds.done;
    this.#resync = setInterval(() => this.#jobs.resync(), this.#resyncMs);
    return this.#ready;
  }

  /** Records where the reader of `partition` (or of every partition) now is. */
  #advance(cursor: string, partition: number | undefined): void {
    if (partition !== undefined) this.#positions[partition] = cursor;
    else if (this.#positions.length === 1) this.#positions[0] = cursor;
    else {
      const ids = cursor.split(",");
      if (ids.length === this.#positions.length) this.#positions = ids;
    }
  }

  /** Calls `fn` with every feed item this process reads (for example, to stop a canceled job at once). */
  watch(fn: (item: FeedItem) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  #dispatch(items: FeedItem[]): void {
    /** One read of each success's image serves every subscriber here, of the job or its owner. */
    const reads = new Map<string, Promise<string | null>>();
    const imageOf = (jobId: string) => {
      let read = reads.get(jobId);
      if (!read) {
        // Job streams then read the log instead; owner streams send the success without its image
        // (it stays at urls.image). Either way the failure is logged.
        read = this.#broker.image(jobId).catch((error) => {
          this.#log.warn("Cannot read the image of job {id} for its subscribers: {error}", {
            id: jobId,
            error: String(error),
          });
          return null;
        });
        reads.set(jobId, read);
      }
      return read;
    };
    for (const item of items) {
      for (const watcher of this.#watchers) watcher(item);
      this.#journal.record(item);
      if (this.#owners.has(item.owner)) this.#owners.push(item, () => imageOf(item.jobId));
    }
    this.#jobs.dispatch(items, imageOf);
  }

  /**
   * Registers a subscriber, replays the job's events after `after` (or all), then goes live; events
   * that arrive during the replay are read again afterwards, so nothing is missed or repeated. With
   * `owner`, the replay's read also checks ownership and throws 404 for anyone else's job.
   */
  subscribe(
    jobId: string,
    sink: Subscriber,
    after?: string,
    options: { owner?: string } = {},
  ): Promise<Subscription> {
    this.#idle.wake();
    return this.#jobs.subscribe(jobId, sink, after, options);
  }

  /**
   * Registers a stream of every job of `owner`: live from now or, with `after` (an event id such a
   * stream handed out), replayed from there first; see OwnerFeeds.subscribe.
   */
  subscribeOwner(owner: string, subscriber: OwnerSubscriber, after?: string): Subscription {
    this.#idle.wake();
    return this.#owners.subscribe(owner, subscriber, after);
  }

  /** Stops the reader and ends every subscription; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#tailing = false;
      this.#unwatch?.();
      this.#unlisten?.();
      this.#journal.clear();
      clearInterval(this.#resync);
      this.#jobs.closeAll();
      this.#owners.closeAll();
      await this.#loop?.catch(() => {});
    })();
    return this.#closing;
  }
}
