/**
 * The in-memory broker's jobs stream: entries with their leases as one consumer group sees them, the
 * retries waiting out their backoff, and the dead letters (Redis: `jobs`, `jobs:delayed`, `jobs:dead`).
 */
import { compareEventIds } from "../live/notifications.ts";
import type { Delivery } from "./types.ts";

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

  /** Entries not yet delivered to any consumer (the group's lag). */
  get undelivered(): number {
    return this.#fresh.length;
  }

  /** How many new entries are ahead of the job's (null when it has none waiting). */
  position(jobId: string): number | null {
    const index = this.#fresh.findIndex((entry) => entry.jobId === jobId);
    return index < 0 ? null : index;
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

/** Jobs waiting out a retry backoff before a new entry puts them back on the stream. */
export class DelayedRetries {
  #due = new Map<string, { due: number; timer?: ReturnType<typeof setTimeout> }>();
  #onDue: () => void;

  /** `onDue` runs when a timed retry comes due. */
  constructor(onDue: () => void) {
    this.#onDue = onDue;
  }

  /** Schedules the job `delayMs` after `now`, replacing an earlier schedule; with `timed`, wakes onDue then. */
  add(jobId: string, now: number, delayMs: number, timed: boolean): void {
    this.remove(jobId);
    const timer = timed ? setTimeout(() => this.#onDue(), Math.max(0, delayMs)) : undefined;
    this.#due.set(jobId, { due: now + delayMs, timer });
  }

  /** Forgets the job's retry, if any. */
  remove(jobId: string): void {
    clearTimeout(this.#due.get(jobId)?.timer);
    this.#due.delete(jobId);
  }

  /** Removes and returns the jobs due at `now`, earliest first. */
  takeDue(now: number): string[] {
    const due = [...this.#due].filter(([, entry]) => entry.due <= now);
    due.sort(([, a], [, b]) => a.due - b.due);
    const ids = due.map(([jobId]) => jobId);
    for (const jobId of ids) this.remove(jobId);
    return ids;
  }

  /** Stops every timer (the schedule itself stays). */
  stop(): void {
    for (const { timer } of this.#due.values()) clearTimeout(timer);
  }
}

/** A dead letter the in-memory broker recorded. */
export interface DeadLetter {
  jobId: string;
  entryId: string;
  reason: string;
  at: string;
}

const DEAD_MAX = 10_000;

/** The newest dead letters, at most DEAD_MAX of them. */
export class DeadLetters {
  #letters: DeadLetter[] = [];

  /** Records a dead letter, dropping the oldest beyond the cap. */
  add(letter: DeadLetter): void {
    this.#letters.push(letter);
    if (this.#letters.length > DEAD_MAX) this.#letters.shift();
  }

  /** Copies of the dead letters, oldest first. */
  list(): DeadLetter[] {
    return this.#letters.map((letter) => ({ ...letter }));
  }
}
