/**
 * The worker's side of the image store: a success's images are written before the job's terminal write
 * (a store that fails or is slow makes the run retry, as a provider 5xx does), and objects that no job
 * records are deleted: this run's when its terminal write did not end the job, the job's earlier runs'
 * (a crash between their write and the end) once a later run ended it.
 */
import type { Logger } from "@logtape/logtape";
import { RetryableError } from "../lib/errors.ts";
import type { JobImages } from "../lib/images/job_images.ts";
import type { JobRecord, Outcome } from "../lib/queue/types.ts";

/** What the store's part of a run needs. */
export interface StoreDeps {
  images?: JobImages;
  log: Logger;
}

/**
 * The outcome to write: with a store, a success whose images are now objects of this run; throws a
 * RetryableError when the store did not take them (nothing of this run is left in it then).
 */
export async function keepImages(
  job: JobRecord,
  outcome: Outcome,
  deps: StoreDeps,
  signal: AbortSignal,
): Promise<Outcome> {
  if (!deps.images || outcome.type !== "succeeded") return outcome;
  try {
    return await deps.images.keep(job, outcome, signal);
  } catch (error) {
    if (signal.aborted) throw error;
    throw new RetryableError("Cannot keep the images in the image store", { cause: error });
  }
}

/**
 * After the terminal write: deletes this run's objects when it did not end the job (`ended` false),
 * and, when the job ran before, the objects of its earlier runs. Failures are logged (a bucket
 * lifecycle rule removes what is left).
 */
export async function settleImages(
  job: JobRecord,
  outcome: Outcome,
  ended: boolean,
  deps: StoreDeps,
): Promise<void> {
  const { images, log } = deps;
  if (!images) return;
  const objects = outcome.type === "succeeded" ? outcome.objects ?? [] : [];
  try {
    if (!ended) return await images.discard(objects);
    if (job.attempts > 1) await images.dropEarlier(job.id, objects);
  } catch (error) {
    log.warn("Cannot delete unused images of job {id}: {error}", {
      id: job.id,
      error: String(error),
    });
  }
}
