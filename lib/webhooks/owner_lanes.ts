/**
 * The dispatcher's per-owner shares: how many deliveries each owner has in flight, and the taken
 * deliveries that wait for their owner's slot (bounded per owner, the oldest dropped), so that one
 * owner's slow or hanging target holds at most `perOwner` of the dispatcher's slots.
 */
import type { JobRecord, WebhookTask } from "../queue/types.ts";

/** A taken delivery waiting for its owner's slot, with its job and the end of its lease. */
export interface WaitingTask {
  task: WebhookTask;
  job: JobRecord;
  /** When its lease ends (the outbox then hands it out again). */
  until: number;
}

/** Settings of OwnerLanes. */
export interface OwnerLanesOptions {
  /** Deliveries one owner may have in flight at once. */
  perOwner: number;
  /** Taken deliveries one owner may have waiting for a slot; beyond it the oldest is dropped. */
  maxWaiting: number;
}

function keyOf(task: WebhookTask): string {
  return `${task.jobId}\n${task.type}\n${task.eventId}\n${task.firstAt}`;
}

/** Per-owner slots and waiting lines of one dispatcher. */
export class OwnerLanes {
  #perOwner: number;
  #maxWaiting: number;
  #running = new Map<string, number>();
  #waiting = new Map<string, Map<string, WaitingTask>>();

  constructor({ perOwner, maxWaiting }: OwnerLanesOptions) {
    if (!Number.isInteger(perOwner) || perOwner < 1) {
      throw new RangeError("Cannot create the owner lanes: perOwner < 1");
    }
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) {
      throw new RangeError("Cannot create the owner lanes: maxWaiting < 0");
    }
    this.#perOwner = perOwner;
    this.#maxWaiting = maxWaiting;
  }

  /** True when the owner may start one more delivery now. */
  hasSlot(owner: string): boolean {
    return (this.#running.get(owner) ?? 0) < this.#perOwner;
  }

  /** Counts a delivery of the owner as started. */
  begin(owner: string): void {
    this.#running.set(owner, (this.#running.get(owner) ?? 0) + 1);
  }

  /** Counts a delivery of the owner as ended. */
  end(owner: string): void {
    const left = (this.#running.get(owner) ?? 1) - 1;
    if (left > 0) this.#running.set(owner, left);
    else this.#running.delete(owner);
  }

  /**
   * Keeps a taken delivery until its owner has a slot (a newer take of the same delivery replaces
   * it); returns the deliveries dropped to keep the owner within maxWaiting, the oldest events first.
   */
  wait(item: WaitingTask): WaitingTask[] {
    const owner = item.job.owner;
    let line = this.#waiting.get(owner);
    if (line === undefined) this.#waiting.set(owner, line = new Map());
    line.set(keyOf(item.task), item);
    const dropped: WaitingTask[] = [];
    while (line.size > this.#maxWaiting) {
      let oldest: [string, WaitingTask] | undefined;
      for (const entry of line) {
        if (oldest === undefined || entry[1].task.firstAt < oldest[1].task.firstAt) oldest = entry;
      }
      line.delete(oldest![0]);
      dropped.push(oldest![1]);
    }
    if (line.size === 0) this.#waiting.delete(owner);
    return dropped;
  }

  /**
   * The owner's next waiting delivery whose lease lasts past `now + marginMs` (the oldest event
   * first), taken off its line; ones whose lease is too short are forgotten (the outbox hands them
   * out again).
   */
  next(owner: string, now: number, marginMs: number): WaitingTask | undefined {
    const line = this.#waiting.get(owner);
    if (line === undefined) return undefined;
    let best: [string, WaitingTask] | undefined;
    for (const entry of line) {
      if (entry[1].until <= now + marginMs) line.delete(entry[0]);
      else if (best === undefined || entry[1].task.firstAt < best[1].task.firstAt) best = entry;
    }
    if (best !== undefined) line.delete(best[0]);
    if (line.size === 0) this.#waiting.delete(owner);
    return best?.[1];
  }

  /** Forgets waiting deliveries whose lease has run out. */
  prune(now: number): void {
    for (const [owner, line] of this.#waiting) {
      for (const [key, item] of line) if (item.until <= now) line.delete(key);
      if (line.size === 0) this.#waiting.delete(owner);
    }
  }

  /** Deliveries waiting for their owner's slot, over every owner. */
  get waiting(): number {
    let n = 0;
    for (const line of this.#waiting.values()) n += line.size;
    return n;
  }
}
