/**
 * How the in-memory broker ends a job: its record, its images and its terminal event, written at once,
 * and its owner's day counted (the images a quota reserved given back when it made fewer).
 */
import {
  imageLinks,
  JOB_CANCELED,
  PROCESSING_ERROR,
  TERMINAL_STATUSES,
} from "../live/notifications.ts";
import { usageBody } from "../pace/usage.ts";
import type { MemoryStore, StoredJob } from "./memory_store.ts";
import type { MemoryTurns } from "./memory_turns.ts";
import type { Delivery, JobRecord, Outcome } from "./types.ts";

type Ending = "succeeded" | "failed" | "canceled";

/** Ends jobs in a memory store, once each. */
export class MemoryEndings {
  #store: MemoryStore;
  #turns: MemoryTurns;
  /** Images each job asked for, when the quota reserved them (given back as the job ends). */
  #asked = new Map<string, number>();

  constructor(store: MemoryStore, turns: MemoryTurns) {
    this.#store = store;
    this.#turns = turns;
  }

  /** Remembers the images the quota reserved for a job. */
  reserved(jobId: string, images: number): void {
    this.#asked.set(jobId, images);
  }

  /** True when this delivery's write with this status is the one that ended its job. */
  endedBy(delivery: Delivery, status: string): boolean {
    const fin = this.#store.job(delivery.jobId)?.fin;
    return delivery.entryId !== "" && fin === `${delivery.entryId} ${status}`;
  }

  /** Cancels a job that has not ended. */
  cancel(job: StoredJob): void {
    this.#ended(job.record, "canceled");
    job.record.error = JOB_CANCELED;
    this.#store.change(job, "canceled", { type: "canceled", success: false, error: JOB_CANCELED });
  }

  /** Fails a job with the contract's processing error (a dead letter); false when it had ended. */
  deadLetter(job: StoredJob | undefined, delivery: Delivery): boolean {
    if (!job || TERMINAL_STATUSES.has(job.record.status)) return false;
    if (delivery.entryId !== "") job.fin = `${delivery.entryId} failed`;
    this.#ended(job.record, "failed");
    job.record.error = PROCESSING_ERROR;
    const event = { type: "failed", success: false, error: PROCESSING_ERROR } as const;
    this.#store.change(job, "failed", event);
    return true;
  }

  /** Writes the worker's outcome; false when the job is gone or had ended. */
  finish(job: StoredJob | undefined, delivery: Delivery, outcome: Outcome): boolean {
    if (!job || TERMINAL_STATUSES.has(job.record.status)) return false;
    if (delivery.entryId !== "") job.fin = `${delivery.entryId} ${outcome.type}`;
    const record = job.record;
    const usage = outcome.usage ? { usage: usageBody(outcome.usage) } : {};
    if (outcome.usage) record.usage = { ...outcome.usage };
    this.#ended(record, outcome.type, outcome.usage);
    if (outcome.type === "failed") {
      const { error, errorCode } = outcome;
      record.error = error;
      if (errorCode) record.errorCode = errorCode;
      const code = errorCode ? { error_code: errorCode } : {};
      const event = { type: "failed", success: false, error, ...code, ...usage } as const;
      this.#store.change(job, "failed", event);
      return true;
    }
    const { image, mimeType, revisedPrompt } = outcome;
    const data = { image: "", mime_type: mimeType };
    delete record.error;
    record.mimeType = mimeType;
    if (revisedPrompt !== undefined) {
      record.revisedPrompt = revisedPrompt;
      Object.assign(data, { revised_prompt: revisedPrompt });
    }
    const more = outcome.more ?? [];
    if (outcome.objects?.length) record.objects = outcome.objects.map((o) => ({ ...o }));
    else {
      job.image = outcome.base64 ?? image.toBase64();
      if (more.length > 0) job.more = more.map((extra) => extra.image.toBase64());
    }
    record.imageCount = 1 + more.length;
    record.mimeTypes = [mimeType, ...more.map((extra) => extra.mimeType)];
    // Stored without a ticket: each delivery puts a current one on them (see linkedJson).
    Object.assign(data, { images: imageLinks(record.id, record.mimeTypes) });
    this.#store.change(job, "succeeded", { type: "succeeded", success: true, data, ...usage });
    return true;
  }

  /** Counts a job's end on its owner's day, and takes it out of the waiting room. */
  #ended(record: JobRecord, type: Ending, usage?: Outcome["usage"]): void {
    this.#turns.room.remove(record.id);
    const asked = this.#asked.get(record.id);
    this.#asked.delete(record.id);
    this.#turns.ended({ owner: record.owner, createdAt: record.createdAt, type, usage, asked });
  }
}
