/**
 * The reference model of the broker semantics that broker_model_test.ts checks both brokers against:
 * a plain in-memory model that answers each generated operation as the semantics say.
 */
import { dataUrl, PROCESSING_ERROR } from "../../../lib/live/notifications.ts";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import type { CancelResult, LeaseStatus } from "../../../lib/queue/types.ts";
import { IMAGE } from "./broker_contract_helpers.ts";
import { CANCELED, FAILED_ERROR, JOB_IDS, type Op, OWNERS, REVISED } from "./broker_model_ops.ts";

/** A delivery as every runner reports it: its entry by order of first appearance. */
export interface SeenDelivery {
  entry: number;
  jobId: string;
  deliveries: number;
  consumer: string;
}

/** What one operation answered, comparable across the model and the brokers. */
export type Answer =
  | "skip"
  | "done"
  | boolean
  | number
  | CancelResult
  | LeaseStatus[]
  | SeenDelivery[]
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
}

interface MEntry {
  jobId: string;
  state: "fresh" | "pending" | "acked";
  consumer: string;
  deliveries: number;
  /** Order of first delivery, as runners label entries. */
  label?: number;
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The reference model: what the semantics say each operation answers and leaves behind. */
export class Model {
  jobs = new Map<string, MJob>();
  entries: MEntry[] = [];
  deliveries: { entry: number; consumer: string }[] = [];
  delayed = new Map<string, number>();
  deadLetters = 0;
  #labels = 0;
  /** Per partition, where the next reclaim resumes (an index into `entries`). */
  #cursors: number[];
  #next = 0;
  readonly partitions: number;

  /** With N > 1, claims and reclaims go partition by partition, starting one further each call. */
  constructor(partitions = 1) {
    this.partitions = partitions;
    this.#cursors = new Array(partitions).fill(0);
  }

  #rotation(): number[] {
    const first = this.#next;
    this.#next = (this.#next + 1) % this.partitions;
    return Array.from({ length: this.partitions }, (_, i) => (first + i) % this.partitions);
  }

  #in(p: number): (entry: MEntry) => boolean {
    return (entry) => partitionOf(entry.jobId, this.partitions) === p;
  }

  #claim(consumer: string, count: number): SeenDelivery[] {
    const out: SeenDelivery[] = [];
    for (const p of this.#rotation()) {
      if (out.length >= count) break;
      const fresh = this.entries.filter((e) => e.state === "fresh").filter(this.#in(p));
      out.push(...this.#take(fresh, consumer, count - out.length));
    }
    return out;
  }

  /** Applies step `index` and returns its answer. */
  apply(op: Op, index: number): Answer {
    switch (op.kind) {
      case "submit":
        return this.#submit(JOB_IDS[op.job], OWNERS[op.owner]);
      case "claim":
        return this.#claim(op.consumer, op.count);
      case "reclaim":
        return this.#reclaim(op.consumer, op.count);
      case "renew":
        if (this.deliveries.length === 0) return "skip";
        return op.ds.map((n) => this.#renew(op.consumer, this.#delivery(n)));
      case "promote":
        return this.#promote(op.all ? 2 : 1);
      case "cancel":
        return this.#cancel(JOB_IDS[op.job]);
      case "expire":
        for (const [id, job] of this.jobs) if (TERMINAL.has(job.status)) this.jobs.delete(id);
        return "done";
    }
    if (this.deliveries.length === 0) return "skip";
    const delivery = this.#delivery(op.d);
    const entry = this.entries[delivery.entry];
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
      if (job && !TERMINAL.has(job.status)) this.#end(job, "failed", PROCESSING_ERROR);
      return "done";
    }
    if (!held) return false;
    entry.state = "acked";
    if (op.kind === "retry") {
      if (job?.status !== "running") return false;
      Object.assign(job, { status: "queued", runningEntry: undefined });
      this.delayed.set(job.id, (op.long ? 2 : 1) * 1e6 + index);
      return true;
    }
    if (!job || TERMINAL.has(job.status)) return false;
    if (op.outcome === "failed") this.#end(job, "failed", FAILED_ERROR);
    else this.#succeed(job, op.outcome === "revised");
    return true;
  }

  /** Running jobs that nobody can end any more: their running entry is no longer pending. */
  stranded(): string[] {
    return [...this.jobs.values()]
      .filter((job) => job.status === "running")
      .filter((job) => this.entries[job.runningEntry!]?.state !== "pending")
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

  #delivery(n: number) {
    return this.deliveries[this.deliveries.length - 1 - n % this.deliveries.length];
  }

  #submit(id: string, owner: string): Answer {
    const found = this.jobs.get(id);
    if (found) return { created: false, ...this.#brief(found), owner: found.owner };
    const job: MJob = { id, owner, status: "queued", attempts: 0, events: [] };
    job.events.push({ id, type: "queued", success: true });
    this.jobs.set(id, job);
    this.entries.push({ jobId: id, state: "fresh", consumer: "", deliveries: 0 });
    return { created: true, ...this.#brief(job), owner };
  }

  #take(candidates: MEntry[], consumer: string, count: number): SeenDelivery[] {
    return candidates.slice(0, count).map((entry) => {
      Object.assign(entry, { state: "pending", consumer, deliveries: entry.deliveries + 1 });
      entry.label ??= this.#labels++;
      this.deliveries.push({ entry: this.entries.indexOf(entry), consumer });
      const { jobId, deliveries } = entry;
      return { entry: entry.label, jobId, deliveries, consumer };
    });
  }

  /** Takes pending entries in stream order, resuming after the previous reclaim's last (a cursor). */
  #reclaim(consumer: string, count: number): SeenDelivery[] {
    const out: SeenDelivery[] = [];
    for (const p of this.#rotation()) {
      if (out.length >= count) break;
      const order = this.entries
        .filter((e, n) => e.state === "pending" && n >= this.#cursors[p])
        .filter(this.#in(p));
      const taken = this.#take(order, consumer, count - out.length);
      const next = order[taken.length];
      this.#cursors[p] = next ? this.entries.indexOf(next) : 0;
      out.push(...taken);
    }
    return out;
  }

  #renew(consumer: string, delivery: { entry: number }): LeaseStatus {
    const entry = this.entries[delivery.entry];
    if (entry.state !== "pending" || entry.consumer !== consumer) return "lost";
    return (this.jobs.get(entry.jobId)?.status ?? null) as LeaseStatus;
  }

  #start(entry: number, job: MJob | undefined): Answer {
    if (job?.status === "queued") {
      Object.assign(job, { status: "running", runningEntry: entry });
      job.events.push({ id: job.id, type: "started", success: true });
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
      this.entries.push({ jobId: id, state: "fresh", consumer: "", deliveries: 0 });
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
    Object.assign(job, { status, error });
    job.events.push({ id: job.id, type: status, success: false, error });
  }

  #succeed(job: MJob, revised: boolean): void {
    Object.assign(job, { status: "succeeded", error: undefined, succeeded: true });
    const data: Record<string, string> = {
      image: dataUrl("image/png", IMAGE),
      mime_type: "image/png",
    };
    if (revised) {
      job.revised = REVISED;
      data.revised_prompt = REVISED;
    }
    job.events.push({ id: job.id, type: "succeeded", success: true, data });
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
    if (job.succeeded) Object.assign(shape, { mimeType: "image/png", image: IMAGE });
    if (job.revised !== undefined) shape.revisedPrompt = job.revised;
    return shape;
  }

  #eventShapes(job: MJob): EventShape[] {
    return job.events.map((notification, i) => ({ eventId: String(i + 1), notification }));
  }
}

/** The prompt every submit of a job id uses. */
export function promptOf(id: string): string {
  return `a fox named ${id}`;
}
