/**
 * What broker_model_run.ts reads from a broker to compare with the model: every job's get() and
 * events() with the invariants they hold, webhook takes matched against the model (live tasks
 * exactly, ghosts allowed), an owner's listing paged through and checked, and the feed step by step.
 */
import assert from "node:assert/strict";
import { type JobStatus, TERMINAL_STATUSES } from "../../../lib/live/notifications.ts";
import type { Broker, JobRecord, WebhookTask } from "../../../lib/queue/types.ts";
import type { EventShape, JobShape, Snapshot } from "./broker_model.ts";
import { JOB_IDS } from "./broker_model_ops.ts";
import { compare, TAKE_LIMIT, TAKE_UNIT_MS, takeTime, taskKey } from "./broker_model_outbox.ts";

/**
 * Event ids are times (lib/queue/scripts.ts), where the model numbers each job's events 1, 2, 3…: the
 * checks compare an event's place in its job's log, learnt whenever a job's events are read (a task or
 * a feed item names an event read at or before its step). Each log's ids must increase.
 */
export class EventOrdinals {
  #known = new Map<string, string>();
  #byId = new Map<string, string>();

  /** Learns the places of a job's events, checking that their ids increase. */
  record(jobId: string, events: { eventId: string; notification: { type: string } }[]): void {
    events.forEach((event, i) => {
      assert.match(event.eventId, /^\d{1,16}$/, `${jobId}: event id ${event.eventId}`);
      if (i > 0) {
        assert.ok(
          Number(event.eventId) > Number(events[i - 1].eventId),
          `${jobId}: event ids do not increase: ${events.map((e) => e.eventId)}`,
        );
      }
      this.#known.set(`${jobId} ${event.notification.type} ${event.eventId}`, String(i + 1));
      this.#byId.set(`${jobId} ${event.eventId}`, String(i + 1));
    });
  }

  /** Learns the places of the events of these jobs, as the broker has them now. */
  async learn(broker: Broker, jobIds: Iterable<string>): Promise<void> {
    for (const id of new Set(jobIds)) this.record(id, await broker.events(id));
  }

  /** The event's place in its job's log ("?<id>" when never seen; any type with "?"). */
  of(jobId: string, type: string, eventId: string): string {
    const place = type === "?"
      ? this.#byId.get(`${jobId} ${eventId}`)
      : this.#known.get(`${jobId} ${type} ${eventId}`);
    return place ?? `?${eventId}`;
  }
}

/** The webhook tasks a runner took, in the model's handle order, and its take clock. */
export class TakenTasks {
  readonly ordinals = new EventOrdinals();
  handles: WebhookTask[] = [];
  clock = 0;

  /**
   * Takes every due task; each key the model expects must come back, and anything more must be a
   * ghost the model allows. Returns the live keys, sorted (the model's answer when all is well).
   */
  async take(
    broker: Broker,
    op: { advance: number; lease: number },
    expect: { live: readonly string[]; ghosts: ReadonlyMap<string, number>; where: string },
  ): Promise<string[]> {
    this.clock += op.advance;
    const tasks = await broker.webhooks.take(
      takeTime(this.clock),
      TAKE_LIMIT,
      op.lease * TAKE_UNIT_MS,
    );
    assert.ok(tasks.length < TAKE_LIMIT, `${expect.where}: a take hit its limit`);
    const byKey = new Map<string, WebhookTask[]>();
    const keyOf = (task: WebhookTask) =>
      taskKey({ ...task, eventId: this.ordinals.of(task.jobId, task.type, task.eventId) });
    for (const task of tasks) byKey.set(keyOf(task), [...byKey.get(keyOf(task)) ?? [], task]);
    const answer: string[] = [];
    for (const key of [...byKey.keys()].sort(compare)) {
      // Of equal keys, the newest task is the live one (a ghost is an earlier job of that id).
      const found = byKey.get(key)!.sort((a, b) => b.firstAt - a.firstAt);
      const live = Math.min(found.length, expect.live.filter((k) => k === key).length);
      const extra = found.length - live;
      const allowed = expect.ghosts.get(key) ?? 0;
      assert.ok(
        extra <= allowed,
        `${expect.where}: take returned ${key} ${extra}x beyond the model`,
      );
      answer.push(...found.slice(0, live).map(keyOf));
      this.handles.push(...found.slice(0, live));
    }
    return answer;
  }
}

/**
 * Pages through the owner's jobs (of one status), checking that the pages are full but the last,
 * no job comes twice, and the order is newest first; returns them as "<id> <status>", sorted.
 */
export async function listAll(
  broker: Broker,
  owner: string,
  options: { limit: number; status: JobStatus | undefined; where: string },
): Promise<string[]> {
  const { limit, status, where } = options;
  const pages: JobRecord[][] = [];
  let cursor: string | undefined;
  do {
    const page = await broker.list(owner, { limit, status, cursor });
    pages.push(page.jobs);
    cursor = page.next ?? undefined;
    assert.ok(pages.length <= 100, `${where}: list never ends`);
  } while (cursor !== undefined);
  const jobs = pages.flat();
  const sizes = pages.map((page) => page.length);
  const full = Array.from(
    { length: Math.max(1, Math.ceil(jobs.length / limit)) },
    (_, i) => Math.min(limit, jobs.length - i * limit),
  );
  assert.deepEqual(sizes, full, `${where}: list pages of ${limit}`);
  const ids = jobs.map((job) => job.id);
  assert.equal(new Set(ids).size, ids.length, `${where}: list repeats a job: ${ids}`);
  const times = jobs.map((job) => Date.parse(job.createdAt));
  assert.ok(times.every((t, i) => i === 0 || t <= times[i - 1]), `${where}: list not newest first`);
  return jobs.map((job) => `${job.id} ${job.status}`).sort(compare);
}

/** Follows the feed with replay, one step at a time. */
export class FeedWatch {
  #cursor: string;
  #seen = 0;

  private constructor(cursor: string) {
    this.#cursor = cursor;
  }

  /** Starts at the feed's current end. */
  static async open(broker: Broker): Promise<FeedWatch> {
    return new FeedWatch((await broker.tail(null, { blockMs: 0 })).cursor);
  }

  /** The items since the last check must be the model's events since then, with owner and partition. */
  async check(
    broker: Broker,
    events: readonly string[],
    where: string,
    ordinals: EventOrdinals,
  ): Promise<void> {
    const replayed = await broker.replay(this.#cursor, 1000);
    assert.ok(replayed, `${where}: replay refused its own cursor ${this.#cursor}`);
    await ordinals.learn(broker, replayed.items.map((item) => item.jobId));
    const items = replayed.items.map((item) => {
      const { jobId, eventId, notification: { type } } = item;
      const place = ordinals.of(jobId, type, eventId);
      // Each item names the event before it in its job's log, so the relay can tell a gap.
      const before = Number(place) > 1 ? `${Number(place) - 1}` : "0";
      const previous = item.previousId === "0" ? "0" : ordinals.of(jobId, "?", item.previousId);
      assert.equal(
        previous,
        before,
        `${where}: ${jobId}'s item ${place} names ${previous} before it`,
      );
      return `${jobId} ${place} ${type} ${item.owner} ${item.partition}`;
    });
    const expected = events.slice(this.#seen);
    assert.deepEqual(
      items.sort(compare),
      [...expected].sort(compare),
      `${where}: the feed differs`,
    );
    this.#cursor = replayed.cursor;
    this.#seen = events.length;
  }
}

function jobShape(view: Record<string, unknown> | null): JobShape | null {
  if (!view) return null;
  const shape: JobShape = {};
  for (const [key, value] of Object.entries(view)) if (value !== undefined) shape[key] = value;
  if (typeof shape.createdAt === "string") shape.createdAt = "*";
  if (typeof shape.updatedAt === "string") shape.updatedAt = "*";
  // After a 410 the memory broker keeps the event types of the webhook it forgot; Redis drops both.
  if (shape.webhook === undefined) delete shape.webhookEvents;
  return shape;
}

/** Every job's get() and events(), comparable with the model's snapshot. */
export async function snapshot(broker: Broker, ordinals: EventOrdinals): Promise<Snapshot> {
  const out: Snapshot = {};
  for (const id of JOB_IDS) {
    const view = await broker.get(id, { image: true });
    const shape = jobShape(view as unknown as Record<string, unknown> | null);
    if (shape) {
      // What the job keeps besides its record: its references until it ends, and every image.
      shape.references = await broker.references(id);
      const count = view?.imageCount ?? 0;
      const stored = [];
      for (let k = 0; k <= count; k++) stored.push(await broker.imageAt(id, k));
      shape.stored = stored;
    }
    const log = await broker.events(id);
    ordinals.record(id, log);
    const events: EventShape[] = log.map(({ eventId, notification }) => {
      const { at: _at, ...rest } = notification;
      return { eventId: ordinals.of(id, notification.type, eventId), notification: rest };
    });
    out[id] = { job: shape, events };
  }
  return out;
}

/** The invariants every snapshot must hold, whatever the model says. */
export function assertInvariants(snap: Snapshot, seenOpen: Set<string>, where: string): void {
  for (const [id, { job, events }] of Object.entries(snap)) {
    const terminals = events.filter((e) => TERMINAL_STATUSES.has(String(e.notification.type)));
    assert.ok(terminals.length <= 1, `${where}: ${id} has ${terminals.length} terminal events`);
    if (job && TERMINAL_STATUSES.has(String(job.status))) {
      assert.equal(terminals.length, 1, `${where}: ${id} ended without its terminal event`);
      assert.equal(events.at(-1)?.notification.type, job.status, `${where}: ${id} event != status`);
    }
    if (!job) {
      assert.ok(!seenOpen.has(id), `${where}: ${id} vanished before it ended`);
    }
    if (job && !TERMINAL_STATUSES.has(String(job.status))) seenOpen.add(id);
    else seenOpen.delete(id);
  }
}
