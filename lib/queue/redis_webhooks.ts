/**
 * The Redis broker's pending webhook deliveries: one sorted set per partition (`P{t}webhooks`), scored
 * by due time. The scripts that append events add a member when the job's webhook asks for the event
 * ("<job id> <type> <event seq> <event ms> <attempts>"), atomically with the event.
 */
import type { EventType } from "../live/notifications.ts";
import type { RedisReply } from "../redis/types.ts";
import type { RedisContext } from "./redis_context.ts";
import type { WebhookOutbox, WebhookTask } from "./types.ts";

const TYPES = new Set(["queued", "started", "succeeded", "failed", "canceled"]);

/** A member as a task, or null when it is malformed (it is then dropped). */
export function taskOf(member: string): WebhookTask | null {
  const parts = member.split(" ");
  if (parts.length !== 5 || !TYPES.has(parts[1])) return null;
  const [jobId, type, eventId, firstAt, attempt] = parts;
  return {
    jobId,
    type: type as EventType,
    eventId,
    firstAt: Number(firstAt) || 0,
    attempt: Number(attempt) || 0,
  };
}

/** The member that stands for a task. */
export function memberOf(task: WebhookTask): string {
  return `${task.jobId} ${task.type} ${task.eventId} ${task.firstAt} ${task.attempt}`;
}

/**
 * The outbox over every partition, taken from in turn so that none waits behind another. The same
 * class keeps the Socket.IO notices, in other sorted sets (`key`), where stop() has no use.
 */
export class RedisOutbox implements WebhookOutbox {
  #ctx: RedisContext;
  #keyOf: (p: number) => string;
  #next = 0;

  /** `key(p)` names partition p's sorted set (default: the webhooks'). */
  constructor(ctx: RedisContext, key?: (p: number) => string) {
    this.#ctx = ctx;
    this.#keyOf = key ?? ((p) => ctx.keys.webhooks(p));
  }

  async take(now: number, limit: number, leaseMs: number): Promise<WebhookTask[]> {
    const tasks: WebhookTask[] = [];
    const n = this.#ctx.partitions;
    for (let i = 0; i < n && tasks.length < limit; i++) {
      const p = (this.#next + i) % n;
      const key = this.#keyOf(p);
      const args = [String(now), String(limit - tasks.length), String(now + leaseMs)];
      const members = await this.#ctx.run("takeWebhooks", [key], args) as RedisReply[];
      const bad: string[] = [];
      for (const member of members) {
        const task = taskOf(String(member));
        if (task) tasks.push(task);
        else bad.push(String(member));
      }
      if (bad.length > 0) await this.#ctx.client.send(["ZREM", key, ...bad]);
    }
    this.#next = (this.#next + 1) % n;
    return tasks;
  }

  async done(task: WebhookTask): Promise<void> {
    await this.#ctx.client.send(["ZREM", this.#key(task.jobId), memberOf(task)]);
  }

  async retry(task: WebhookTask, at: number): Promise<void> {
    const next = memberOf({ ...task, attempt: task.attempt + 1 });
    await this.#ctx.run("retryWebhook", [this.#key(task.jobId)], [
      memberOf(task),
      next,
      String(at),
    ]);
  }

  /** Forgets the job's webhook: its pending deliveries are then dropped as they come due. */
  async stop(jobId: string): Promise<void> {
    await this.#ctx.client.send(["HDEL", this.#ctx.job(jobId), "wh", "whe"]);
  }

  #key(jobId: string): string {
    return this.#keyOf(this.#ctx.keys.partitionOf(jobId));
  }
}
