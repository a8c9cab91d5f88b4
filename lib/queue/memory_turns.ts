/**
 * The in-memory broker's provider turns and usage: a fair waiting room in front of its jobs stream, the
 * pace, each owner's days (images, cost, outcomes, the quota's reservations), and the turns asked for
 * later when a job was parked for want of one.
 */
import { FairRoom } from "../pace/fair_room.ts";
import { Pacer } from "../pace/pacer.ts";
import { emptyDay, utcDay } from "../pace/usage.ts";
import type { EntryQueue } from "./memory_stream.ts";
import type { Turn, Usage, UsageDay } from "./types.ts";

/** Days kept per owner (GET /v1/usage reaches a month back). */
const DAYS_KEPT = 35;

/** Turns, pace and usage of the in-memory broker. */
export class MemoryTurns {
  readonly room = new FairRoom();
  #pacer: Pacer;
  #queue: EntryQueue;
  #nextEntry: () => string;
  #now: () => number;
  #days = new Map<string, UsageDay>();
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #wake: () => void;
  #waking: { at: number; timer: ReturnType<typeof setTimeout> } | null = null;
  /** The pace as the last turn saw it (null: unpaced). */
  pace: number | null = null;

  constructor(
    { pace, wake, queue, nextEntry, now }: {
      pace: number | null;
      /** Wakes blocked claims. */
      wake: () => void;
      queue: EntryQueue;
      nextEntry: () => string;
      now: () => number;
    },
  ) {
    this.#pacer = new Pacer(pace === null ? -1 : pace);
    this.#wake = wake;
    this.#queue = queue;
    this.#nextEntry = nextEntry;
    this.#now = now;
  }

  /**
   * A job ready to run: straight onto the stream when nobody waits and the pace has a turn, else into
   * the room (and, parked for want of a turn in an empty room, its turn is asked for once there is one).
   */
  enqueue(id: string, owner: string): void {
    if (this.room.size === 0 && this.#queue.undelivered === 0) {
      const take = this.#pacer.take(1, this.#now());
      if (take.granted === 1) return this.#queue.add({ entryId: this.#nextEntry(), jobId: id });
      this.room.park(id, owner);
      return this.#later(take.waitMs);
    }
    this.room.park(id, owner);
  }

  /** Moves up to `want` waiting jobs onto the stream, owners taking turns, as the pace allows. */
  turn(want: number): Turn {
    const now = this.#now();
    if (this.room.size === 0) {
      return { moved: 0, waiting: 0, waitMs: this.#pacer.wait(now), pace: this.#pace(now) };
    }
    const take = this.#pacer.take(Math.min(want, this.room.size), now);
    const ids = this.room.pop(take.granted);
    for (const jobId of ids) this.#queue.add({ entryId: this.#nextEntry(), jobId });
    this.pace = take.rate > 0 ? take.rate : null;
    return { moved: ids.length, waiting: this.room.size, waitMs: take.waitMs, pace: this.pace };
  }

  /** Wakes blocked claims in `ms` (the pace's next turn), unless a wake-up comes sooner already. */
  wakeIn(ms: number): void {
    const at = this.#now() + Math.max(1, ms);
    if (this.#waking && this.#waking.at <= at) return;
    if (this.#waking) clearTimeout(this.#waking.timer);
    const timer = setTimeout(() => {
      this.#waking = null;
      this.#wake();
    }, Math.max(1, Math.min(ms, 60_000)));
    this.#waking = { at, timer };
  }

  /** A provider 429: no turn for `retryAfterMs`, and a slower pace. */
  throttle(retryAfterMs: number): void {
    this.#pacer.throttle(retryAfterMs, this.#now());
  }

  /** The owner's day (a copy). */
  day(owner: string, day: string): UsageDay {
    return structuredClone(this.#days.get(`${owner} ${day}`) ?? emptyDay(day));
  }

  /** Reserves `images` of the owner's day against `cap`; false when they would exceed it. */
  reserve(owner: string, images: number, cap: number): boolean {
    const day = this.#day(owner, utcDay(this.#now()));
    // Images made count too, should the cap have been set after some were made today.
    if (Math.max(day.reserved, day.images) + images > cap) return false;
    day.reserved += images;
    return true;
  }

  /** Counts a job's end on its owner's day of submission, giving back the images it did not make. */
  ended(
    { owner, createdAt, type, usage, asked }: {
      owner: string;
      createdAt: string;
      type: "succeeded" | "failed" | "canceled";
      usage?: Usage;
      asked?: number;
    },
  ): void {
    const day = this.#day(owner, utcDay(createdAt));
    const made = usage?.images ?? 0;
    day.jobs[type] += 1;
    day.images += made;
    day.costUsdTicks += usage?.costUsdTicks ?? 0;
    if (asked !== undefined) day.reserved = Math.max(0, day.reserved - Math.max(0, asked - made));
  }

  /** Stops the turns asked for later. */
  close(): void {
    if (this.#waking) clearTimeout(this.#waking.timer);
    this.#waking = null;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #day(owner: string, day: string): UsageDay {
    const key = `${owner} ${day}`;
    let found = this.#days.get(key);
    if (!found) {
      found = emptyDay(day);
      this.#days.set(key, found);
      this.#forgetOld();
    }
    return found;
  }

  #forgetOld(): void {
    const oldest = utcDay(this.#now() - DAYS_KEPT * 86_400_000);
    for (const [key, day] of this.#days) if (day.day < oldest) this.#days.delete(key);
  }

  #pace(now: number): number | null {
    const rate = this.#pacer.rate(now);
    return rate > 0 ? rate : null;
  }

  #later(waitMs: number, tries = 3): void {
    if (tries <= 0) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      const done = this.turn(1);
      if (done.moved === 0 && done.waiting > 0) this.#later(Math.max(10, done.waitMs), tries - 1);
    }, Math.min(waitMs, 60_000));
    this.#timers.add(timer);
  }
}
