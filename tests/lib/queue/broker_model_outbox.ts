/**
 * The reference model of the webhook outbox, part of broker_model.ts: a task per event a job's webhook
 * asked for, hidden while leased, and "ghosts": tasks whose job was stopped (a 410) or expired, which
 * a broker may still hold (the dispatcher drops them) and which are therefore allowed but not required.
 */
import type { EventType } from "../../../lib/live/notifications.ts";

/** Where the take clock starts, in ms since the epoch: far after any event a run makes. */
export const TAKE_EPOCH_MS = 4_000_000_000_000;
/** One unit of the take clock (leases and retry delays are whole units). */
export const TAKE_UNIT_MS = 1_000_000_000;
/** More tasks than a run can make, so that a take never leaves a due one behind. */
export const TAKE_LIMIT = 100;

/** The take clock's time `units` from its start, in ms. */
export function takeTime(units: number): number {
  return TAKE_EPOCH_MS + units * TAKE_UNIT_MS;
}

/** How a task is compared across brokers: "<job id> <type> <event id> <attempt>". */
export function taskKey(
  task: { jobId: string; type: EventType | string; eventId: string; attempt: number },
): string {
  return `${task.jobId} ${task.type} ${task.eventId} ${task.attempt}`;
}

interface MTask {
  jobId: string;
  type: EventType;
  eventId: string;
  attempt: number;
  /** Due at this take-clock time (-1: at once, the event happened before the take clock starts). */
  due: number;
  live: boolean;
}

/** The outbox as the semantics say: live tasks with their due times, and the ghosts a broker may keep. */
export class OutboxModel {
  #tasks: MTask[] = [];
  #ghosts = new Map<string, number>();
  /** Every task handed out by a take, with the attempt it had then (runners keep the same list). */
  #handles: { task: MTask; attempt: number }[] = [];
  /** The take clock, in units. */
  clock = 0;
  /** The handle the last done or retry used (an index into the handles), or -1. */
  picked = -1;

  /** A new task for an event the job's webhook asked for, due at once. */
  add(jobId: string, type: EventType, eventId: string): void {
    this.#tasks.push({ jobId, type, eventId, attempt: 0, due: -1, live: true });
  }

  /** Advances the clock, takes every due task and leases it; returns the keys taken, sorted. */
  take(advance: number, lease: number): string[] {
    this.clock += advance;
    const due = this.#tasks.filter((task) => task.due <= this.clock);
    due.sort((a, b) => compare(taskKey(a), taskKey(b)));
    for (const task of due) {
      task.due = this.clock + lease;
      this.#handles.push({ task, attempt: task.attempt });
    }
    return due.map(taskKey);
  }

  /** Picks the `h`-th latest handle that still names a live task at its current attempt. */
  #pick(h: number): MTask | null {
    const current = this.#handles.flatMap(({ task, attempt }, i) =>
      task.live && task.attempt === attempt ? [i] : []
    );
    if (current.length === 0) {
      this.picked = -1;
      return null;
    }
    this.picked = current[current.length - 1 - h % current.length];
    return this.#handles[this.picked].task;
  }

  /** done on a handle: the task is forgotten. */
  done(h: number): "skip" | "done" {
    const task = this.#pick(h);
    if (!task) return "skip";
    task.live = false;
    this.#tasks.splice(this.#tasks.indexOf(task), 1);
    return "done";
  }

  /** retry on a handle: the next attempt, due `delay` units from now. */
  retry(h: number, delay: number): "skip" | "done" {
    const task = this.#pick(h);
    if (!task) return "skip";
    task.attempt += 1;
    task.due = this.clock + delay;
    return "done";
  }

  /** The job's webhook was stopped, or the job expired: its tasks become ghosts. */
  haunt(jobId: string): void {
    for (const task of this.#tasks.filter((t) => t.jobId === jobId)) {
      task.live = false;
      const key = taskKey(task);
      this.#ghosts.set(key, (this.#ghosts.get(key) ?? 0) + 1);
    }
    this.#tasks = this.#tasks.filter((t) => t.jobId !== jobId);
  }

  /** How many tasks of each key a broker may return beyond the live ones. */
  ghosts(): ReadonlyMap<string, number> {
    return this.#ghosts;
  }
}

/** Plain code-unit order, as sort() without a comparator uses. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
