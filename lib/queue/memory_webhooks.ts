/** The in-memory broker's pending webhook deliveries (Redis: the partitions' `webhooks` sorted sets). */
import type { EventType } from "../live/notifications.ts";
import type { JobRecord, WebhookOutbox, WebhookTask } from "./types.ts";

/** The event types a job's webhook gets when it names none: the terminal ones. */
export const DEFAULT_WEBHOOK_EVENTS: readonly EventType[] = ["succeeded", "failed", "canceled"];

/** True when the job's webhook asks for events of this type. */
export function wantsWebhook(record: JobRecord, type: EventType): boolean {
  if (!record.webhook) return false;
  return (record.webhookEvents ?? DEFAULT_WEBHOOK_EVENTS).includes(type);
}

/** Tasks by job and type, each hidden until its due time. */
export class MemoryOutbox implements WebhookOutbox {
  #tasks = new Map<string, { task: WebhookTask; dueAt: number }>();
  #forget: (jobId: string) => void;

  /** `forget(jobId)` removes the job's webhook when a receiver answers 410. */
  constructor(forget: (jobId: string) => void) {
    this.#forget = forget;
  }

  /** Adds a delivery due now (an event the job's webhook asked for). */
  add(task: WebhookTask, now: number): void {
    this.#tasks.set(keyOf(task), { task: { ...task }, dueAt: now });
  }

  take(now: number, limit: number, leaseMs: number): Promise<WebhookTask[]> {
    const due = [...this.#tasks.values()].filter((t) => t.dueAt <= now);
    due.sort((a, b) => a.dueAt - b.dueAt);
    const taken = due.slice(0, Math.max(0, limit));
    for (const t of taken) t.dueAt = now + leaseMs;
    return Promise.resolve(taken.map((t) => ({ ...t.task })));
  }

  done(task: WebhookTask): Promise<void> {
    if (this.#tasks.get(keyOf(task))?.task.attempt === task.attempt) {
      this.#tasks.delete(keyOf(task));
    }
    return Promise.resolve();
  }

  retry(task: WebhookTask, at: number): Promise<void> {
    const found = this.#tasks.get(keyOf(task));
    if (found && found.task.attempt === task.attempt) {
      found.task.attempt = task.attempt + 1;
      found.dueAt = at;
    }
    return Promise.resolve();
  }

  stop(jobId: string): Promise<void> {
    this.#forget(jobId);
    for (const [key, { task }] of this.#tasks) if (task.jobId === jobId) this.#tasks.delete(key);
    return Promise.resolve();
  }

  /** How many deliveries are pending. */
  get size(): number {
    return this.#tasks.size;
  }
}

function keyOf(task: Pick<WebhookTask, "jobId" | "type" | "eventId" | "firstAt">): string {
  return `${task.jobId}\n${task.type}\n${task.eventId}\n${task.firstAt}`;
}
