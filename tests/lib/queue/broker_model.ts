/**
 * The reference model of the broker semantics that broker_model_test.ts checks both brokers against:
 * a plain in-memory model that answers each generated operation as the semantics say.
 */
import {
  dataUrl,
  type EventType,
  imageLinks,
  type NotificationBody,
  PROCESSING_ERROR,
} from "../../../lib/live/notifications.ts";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import type { CancelResult, LeaseStatus } from "../../../lib/queue/types.ts";
import { IMAGE } from "./broker_contract_helpers.ts";
import {
  CANCELED,
  FAILED_ERROR,
  type Hook,
  JOB_IDS,
  MORE_IMAGES,
  type Op,
  OWNERS,
  referencesOf,
  REVISED,
  WEBHOOK_URL,
} from "./broker_model_ops.ts";
import { compare, OutboxModel } from "./broker_model_outbox.ts";
import { type SeenDelivery, StreamModel } from "./broker_model_stream.ts";

export type { SeenDelivery };

/** What one operation answered, comparable across the model and the brokers. */
export type Answer =
  | "skip"
  | "done"
  | boolean
  | number
  | CancelResult
  | LeaseStatus[]
  | SeenDelivery[]
  | string[]
  | { created: boolean; status: string; attempts: number; owner: string }
  | { status: string; attempts: number }
  | null;

/** A job as get() shows it, times replaced by "*" and undefined fields left out. */
export type JobShape = Record<string, unknown>;
/** An event as events() shows it, without its time. */
export type EventShape = { eventId: string; notification: Record<string, unknown> };
/** Every job's get() and events() after a step. */
export type Snapshot = Record<string, { job: JobShape | null; events: EventShape[] }>;

interface MJob {
  id: string;
  owner: string;
  status: string;
  attempts: number;
  error?: string;
  revised?: string;
  succeeded?: boolean;
  events: Record<string, unknown>[];
  runningEntry?: number;
  /** "<entry> <status>" of the delivery's write that ended it: that write again answers done. */
  endedBy?: string;
  hook: Hook;
  /** Reference images, kept until the job ends. */
  refs: string[];
  /** How many reference images it was submitted with. */
  refCount: number;
  /** Images of its success. */
  images?: number;
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const DEFAULT_HOOK_EVENTS: readonly string[] = ["succeeded", "failed", "canceled"];

/** The reference model: what the semantics say each operation answers and leaves behind. */
export class Model {
  jobs = new Map<string, MJob>();
  stream: StreamModel;
  delayed = new Map<string, number>();
  deadLetters = 0;
  /** Pending webhook deliveries. */
  outbox = new OutboxModel();
  /** Every event in the order it happened, as "<job> <event id> <type> <owner> <partition>". */
  feed: string[] = [];
  constructor(partitions = 1) {
    this.stream = new StreamModel(partitions);
  }

  /** Applies step `index` and returns its answer. */
  apply(op: Op, index: number): Answer {
    switch (op.kind) {
      case "submit":
        return this.#submit(JOB_IDS[op.job], OWNERS[op.owner], op.hook, op.refs);
      case "claim":
        return this.stream.claim(op.consumer, op.count);
      case "reclaim":
        return this.stream.reclaim(op.consumer, op.count);
      case "renew":
        if (this.stream.deliveries.length === 0) return "skip";
        return op.ds.map((n) => this.#renew(op.consumer, this.stream.delivery(n)));
      case "promote":
        return this.#promote(op.all ? 2 : 1);
      case "cancel":
        return this.#cancel(JOB_IDS[op.job]);
      case "expire":
        for (const [id, job] of this.jobs) {
          if (!TERMINAL.has(job.status)) continue;
          this.jobs.delete(id);
          this.outbox.haunt(id);
        }
        return "done";
      case "takeWebhooks":
        return this.outbox.take(op.advance, op.lease);
      case "doneWebhook":
        return this.outbox.done(op.h);
      case "retryWebhook":
        return this.outbox.retry(op.h, op.delay);
      case "stopWebhook":
        return this.#stop(JOB_IDS[op.job]);
      case "list":
        return this.#list(OWNERS[op.owner], op.status);
      case "queuePosition":
        return this.jobs.get(JOB_IDS[op.job])?.status === "queued";
    }
    if (this.stream.deliveries.length === 0) return "skip";
    const delivery = this.stream.delivery(op.d);
    const entry = this.stream.entries[delivery.entry];
    const job = this.jobs.get(entry.jobId);
    // Every write through a delivery is fenced by its lease, start and ack included: a start by a
    // consumer that lost the entry would run the job beside the new holder (or, when the entry was
    // acknowledged by a retry, leave it running with no entry: never ended), and its ack would take
    // the entry from under the new holder.
    const held = entry.state === "pending" && entry.consumer === delivery.consumer;
    if (op.kind === "start") return held ? this.#start(delivery.entry, job) : null;
    if (op.kind === "ack") {
      if (held) entry.state = "acked";
      return "done";
    }
    if (op.kind === "deadLetter") {
      if (!held) return "done";
      entry.state = "acked";
      this.deadLetters += 1;
      if (job && !TERMINAL.has(job.status)) {
        this.#end(job, "failed", PROCESSING_ERROR);
        job.endedBy = `${delivery.entry} failed`;
      }
      return "done";
    }
    // The write that ended the job, run again (a resend): done, nothing written again.
    const status = op.kind === "finish" ? (op.outcome === "failed" ? "failed" : "succeeded") : "";
    if (op.kind === "finish" && job?.endedBy === `${delivery.entry} ${status}`) return true;
    if (!held) return false;
    entry.state = "acked";
    if (op.kind === "giveBack") {
      if (job?.status !== "running") return false;
      Object.assign(job, { status: "queued", runningEntry: undefined });
      job.attempts = Math.max(0, job.attempts - 1);
      this.stream.parkFront(job.id, job.owner);
      return true;
    }
    if (op.kind === "retry") {
      if (job?.status !== "running") return false;
      Object.assign(job, { status: "queued", runningEntry: undefined });
      this.delayed.set(job.id, (op.long ? 2 : 1) * 1e6 + index);
      return true;
    }
    if (!job || TERMINAL.has(job.status)) return false;
    if (op.outcome === "failed") this.#end(job, "failed", FAILED_ERROR);
    else this.#succeed(job, op.outcome === "revised", op.images ?? 1);
    job.endedBy = `${delivery.entry} ${status}`;
    return true;
  }

  /** Running jobs that nobody can end any more: their running entry is no longer pending. */
  stranded(): string[] {
    return [...this.jobs.values()]
      .filter((job) => job.status === "running")
      .filter((job) => this.stream.entries[job.runningEntry!]?.state !== "pending")
      .map((job) => job.id);
  }

  /** What get() and events() show for every job id. */
  snapshot(): Snapshot {
    const out: Snapshot = {};
    for (const id of JOB_IDS) {
      const job = this.jobs.get(id);
      out[id] = { job: job ? this.#shape(job) : null, events: job ? this.#eventShapes(job) : [] };
    }
    return out;
  }

  #submit(id: string, owner: string, hook: Hook, refs?: number): Answer {
    const found = this.jobs.get(id);
    if (found) return { created: false, ...this.#brief(found), owner: found.owner };
    const job: MJob = {
      id,
      owner,
      status: "queued",
      attempts: 0,
      events: [],
      hook,
      refs: referencesOf(id, refs),
      refCount: refs ?? 0,
    };
    this.jobs.set(id, job);
    this.#emit(job, { type: "queued", success: true });
    this.stream.enqueue(id, owner);
    return { created: true, ...this.#brief(job), owner };
  }

  #renew(consumer: string, delivery: { entry: number }): LeaseStatus {
    const entry = this.stream.entries[delivery.entry];
    if (entry.state !== "pending" || entry.consumer !== consumer) return "lost";
    return (this.jobs.get(entry.jobId)?.status ?? null) as LeaseStatus;
  }

  #start(entry: number, job: MJob | undefined): Answer {
    if (job?.status === "queued") {
      Object.assign(job, { status: "running", runningEntry: entry });
      this.#emit(job, { type: "started", success: true });
    } else if (job?.status !== "running" || job.runningEntry !== entry) return null;
    job.attempts += 1;
    return this.#brief(job);
  }

  /** Moves due delayed jobs back as new entries; one that ended while it waited is dropped instead. */
  #promote(upTo: number): number {
    const due = [...this.delayed].filter(([, key]) => key < upTo * 1e6 + 1e6);
    due.sort(([, a], [, b]) => a - b);
    let moved = 0;
    for (const [id] of due) {
      this.delayed.delete(id);
      const status = this.jobs.get(id)?.status;
      if (status === undefined || TERMINAL.has(status)) continue;
      this.stream.parkFront(id, this.jobs.get(id)!.owner);
      moved += 1;
    }
    return moved;
  }

  #cancel(id: string): CancelResult {
    const job = this.jobs.get(id);
    if (!job) return "missing";
    if (TERMINAL.has(job.status)) return "ended";
    this.#end(job, "canceled", CANCELED);
    return "canceled";
  }

  #end(job: MJob, status: "failed" | "canceled", error: string): void {
    this.stream.leave(job.id);
    Object.assign(job, { status, error, refs: [] });
    this.#emit(job, { type: status, success: false, error });
  }

  #succeed(job: MJob, revised: boolean, images: number): void {
    this.stream.leave(job.id);
    Object.assign(job, {
      status: "succeeded",
      error: undefined,
      succeeded: true,
      refs: [],
      images,
    });
    const data: { image: string; mime_type: string; revised_prompt?: string } = {
      image: dataUrl("image/png", IMAGE),
      mime_type: "image/png",
    };
    if (revised) {
      job.revised = REVISED;
      data.revised_prompt = REVISED;
    }
    const images_ = imageLinks(job.id, mimeTypesOf(images));
    this.#emit(job, { type: "succeeded", success: true, data: { ...data, images: images_ } });
  }

  /** Appends an event to the job's log and to the feed, and a webhook task when the job asked for it. */
  #emit(job: MJob, body: NotificationBody): void {
    job.events.push({ id: job.id, ...body });
    const eventId = String(job.events.length);
    const partition = partitionOf(job.id, this.stream.partitions);
    this.feed.push(`${job.id} ${eventId} ${body.type} ${job.owner} ${partition}`);
    const wanted: readonly string[] = job.hook === "default" ? DEFAULT_HOOK_EVENTS : job.hook ?? [];
    if (wanted.includes(body.type)) this.outbox.add(job.id, body.type as EventType, eventId);
  }

  /** A 410: the job forgets its webhook, and its pending tasks are dropped (or left to be dropped). */
  #stop(id: string): "done" {
    const job = this.jobs.get(id);
    if (job) job.hook = undefined;
    this.outbox.haunt(id);
    return "done";
  }

  /** The owner's jobs (of one status) as "<id> <status>", sorted. */
  #list(owner: string, status: string | undefined): string[] {
    return [...this.jobs.values()]
      .filter((job) => job.owner === owner && (status === undefined || job.status === status))
      .map((job) => `${job.id} ${job.status}`)
      .sort(compare);
  }

  #brief(job: MJob): { status: string; attempts: number } {
    return { status: job.status, attempts: job.attempts };
  }

  #shape(job: MJob): JobShape {
    const shape: JobShape = {
      id: job.id,
      owner: job.owner,
      status: job.status,
      prompt: promptOf(job.id),
      createdAt: "*",
      updatedAt: "*",
      attempts: job.attempts,
    };
    if (job.error !== undefined) shape.error = job.error;
    if (job.succeeded) {
      const count = job.images ?? 1;
      const mimeTypes = mimeTypesOf(count);
      Object.assign(shape, { mimeType: "image/png", image: IMAGE, imageCount: count, mimeTypes });
    }
    if (job.refCount > 0) shape.referenceCount = job.refCount;
    shape.references = job.refs;
    const more = MORE_IMAGES.slice(0, (job.images ?? 1) - 1).map((x) => x.image.toBase64());
    shape.stored = job.succeeded ? [IMAGE, ...more, null] : [null];
    if (job.revised !== undefined) shape.revisedPrompt = job.revised;
    if (job.hook !== undefined) shape.webhook = WEBHOOK_URL;
    if (Array.isArray(job.hook)) shape.webhookEvents = job.hook;
    return shape;
  }

  #eventShapes(job: MJob): EventShape[] {
    return job.events.map((notification, i) => ({ eventId: String(i + 1), notification }));
  }
}

/** The media types of a success of `count` images. */
function mimeTypesOf(count: number): string[] {
  return ["image/png", ...MORE_IMAGES.slice(0, count - 1).map((x) => x.mimeType)];
}

/** The prompt every submit of a job id uses. */
export function promptOf(id: string): string {
  return `a fox named ${id}`;
}
