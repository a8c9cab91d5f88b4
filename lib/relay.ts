/**
 * One relay per process: a single reader tails the broker's feed and fans events out to this
 * process's SSE and WebSocket subscribers. Routes only register subscribers here.
 */
import type { Logger } from "@logtape/logtape";
import { compareEventIds, isTerminal, type StoredEvent } from "./notifications.ts";
import type { Broker, FeedItem } from "./queue/types.ts";

/** Receives a job's events in order; `done` is called once after the terminal event or on close. */
export interface Subscriber {
  event(event: StoredEvent): void;
  done?(reason: "terminal" | "closed"): void;
}

/** A live registration; `close()` stops delivery and is idempotent. */
export interface Subscription {
  close(): void;
}

interface Entry {
  jobId: string;
  sink: Subscriber;
  lastSent: string;
  replaying: boolean;
  pending: boolean;
  closed: boolean;
}

function nextId(id: string): string | null {
  return /^\d+$/.test(id) ? String(BigInt(id) + 1n) : null;
}

/** Tails the feed and delivers each job's events to its local subscribers with no gap and no duplicate. */
export class Relay {
  #broker: Broker;
  #log: Logger;
  #blockMs: number;
  #subs = new Map<string, Set<Entry>>();
  #stop = new AbortController();
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #ready: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #idleMaxMs: number;
  #watchers = new Set<(item: FeedItem) => void>();

  constructor(
    { broker, log, blockMs = 5_000, idleMaxMs = 8_000 }: {
      broker: Broker;
      log: Logger;
      blockMs?: number;
      /** Longest pause between polls of a non-blocking broker with no subscribers here. */
      idleMaxMs?: number;
    },
  ) {
    this.#idleMaxMs = idleMaxMs;
    this.#broker = broker;
    this.#log = log;
    this.#blockMs = blockMs;
  }

  /** Number of live subscribers in this process. */
  get size(): number {
    let n = 0;
    for (const set of this.#subs.values()) n += set.size;
    return n;
  }

  /** Starts tailing the feed; resolves once the reader has its starting cursor. */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    let resolveReady!: () => void;
    this.#ready = new Promise((resolve) => (resolveReady = resolve));
    this.#loop = this.#run(resolveReady);
    return this.#ready;
  }

  async #run(ready: () => void): Promise<void> {
    let cursor: string | null = null;
    let idleMs = 0;
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      try {
        const result = await this.#broker.tail(cursor, {
          blockMs: this.#blockMs,
          signal: this.#stop.signal,
        });
        if (cursor === null) ready();
        cursor = result.cursor;
        failures = 0;
        this.#dispatch(result.items);
        if (!this.#broker.blocking) {
          idleMs = result.items.length > 0
            ? 0
            : Math.min(Math.max(100, idleMs * 2), this.#idleMaxMs);
          if (idleMs > 0) await this.#sleep(this.size > 0 ? Math.min(idleMs, 500) : idleMs);
        }
      } catch (error) {
        failures++;
        this.#log.warn("Cannot read the relay feed: {error}", { error: String(error) });
        await this.#sleep(Math.min(100 * 2 ** failures, 5_000));
        // After an outage, catch every subscriber up from the job logs.
        for (const set of this.#subs.values()) for (const entry of set) void this.#catchUp(entry);
      }
    }
    ready();
  }

  /** Waits, ending early on close or when a subscriber arrives (so polling speeds up at once). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#stop.signal.removeEventListener("abort", done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
      this.#stop.signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Calls `fn` with every feed item this process reads (for example, to stop a canceled job at once). */
  watch(fn: (item: FeedItem) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  #dispatch(items: FeedItem[]): void {
    for (const item of items) {
      for (const watcher of this.#watchers) watcher(item);
      const set = this.#subs.get(item.jobId);
      if (!set) continue;
      for (const entry of set) this.#offer(entry, item);
    }
  }

  #offer(entry: Entry, item: FeedItem): void {
    if (entry.closed || entry.replaying || entry.pending) {
      entry.pending = true;
      return;
    }
    if (compareEventIds(item.eventId, entry.lastSent) <= 0) return;
    const direct = nextId(entry.lastSent) === item.eventId &&
      item.notification.type !== "succeeded";
    if (direct) this.#deliver(entry, { eventId: item.eventId, notification: item.notification });
    else void this.#catchUp(entry);
  }

  #deliver(entry: Entry, event: StoredEvent): void {
    if (entry.closed || compareEventIds(event.eventId, entry.lastSent) <= 0) return;
    entry.lastSent = event.eventId;
    entry.sink.event(event);
    if (isTerminal(event.notification.type)) this.#remove(entry, "terminal");
  }

  /** Reads the job's log after what the subscriber has, and delivers it; repeats if more came meanwhile. */
  async #catchUp(entry: Entry): Promise<void> {
    if (entry.replaying || entry.closed) return;
    entry.replaying = true;
    try {
      do {
        entry.pending = false;
        // The whole log (one read either way): a subscriber that already has the terminal event is done.
        const events = await this.#broker.events(entry.jobId);
        for (const event of events) this.#deliver(entry, event);
        const last = events.at(-1);
        if (last && isTerminal(last.notification.type)) this.#remove(entry, "terminal");
      } while (entry.pending && !entry.closed);
    } catch (error) {
      entry.pending = true;
      this.#log.warn("Cannot read events of job {id}: {error}", {
        id: entry.jobId,
        error: String(error),
      });
    } finally {
      entry.replaying = false;
    }
  }

  /**
   * Registers a subscriber, replays the job's events after `after` (or all), then goes live.
   * Events that arrive during the replay are caught up afterwards, so nothing is missed or repeated.
   */
  async subscribe(jobId: string, sink: Subscriber, after?: string): Promise<Subscription> {
    const entry: Entry = {
      jobId,
      sink,
      lastSent: after ?? "0",
      replaying: false,
      pending: false,
      closed: false,
    };
    let set = this.#subs.get(jobId);
    if (!set) this.#subs.set(jobId, set = new Set());
    set.add(entry);
    this.#wake?.();
    await this.#catchUp(entry);
    if (entry.pending && !entry.closed) await this.#catchUp(entry);
    return { close: () => this.#remove(entry, "closed") };
  }

  #remove(entry: Entry, reason: "terminal" | "closed"): void {
    if (entry.closed) return;
    entry.closed = true;
    const set = this.#subs.get(entry.jobId);
    set?.delete(entry);
    if (set?.size === 0) this.#subs.delete(entry.jobId);
    entry.sink.done?.(reason);
  }

  /** Stops the reader and ends every subscription; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      for (const set of [...this.#subs.values()]) {
        for (const entry of [...set]) this.#remove(entry, "closed");
      }
      await this.#loop?.catch(() => {});
    })();
    return this.#closing;
  }
}
