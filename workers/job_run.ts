/** One job's run after intake: the provider call, then its one outcome (success, retry, failure). */
import type { Logger } from "@logtape/logtape";
import { isTransient, RateLimitedError, RetryableError } from "../lib/errors.ts";
import { pause } from "../lib/pause.ts";
import { PROCESSING_ERROR } from "../lib/live/notifications.ts";
import type { ImageProvider } from "../lib/provider/grok.ts";
import {
  type Broker,
  type Delivery,
  type JobRecord,
  type Outcome,
  TICKS_PER_USD,
} from "../lib/queue/types.ts";
import { failure, providerRequest, succeeded } from "./job_request.ts";
import { persist, retryDelay } from "./retry.ts";
import { keepImages, settleImages } from "./stored_images.ts";
import type { JobImages } from "../lib/images/job_images.ts";

/**
 * One delivery being handled here: `intake` until start() hands it the job (a seed's job may not exist
 * yet), `running` while the provider is called, `ending` once its last write is under way (fenced by the
 * broker, so renewals no longer matter).
 */
export interface InFlight {
  delivery: Delivery;
  controller: AbortController;
  phase: "intake" | "running" | "ending";
}

/** What a job's run needs from its worker. */
export interface RunDeps {
  broker: Broker;
  provider: ImageProvider;
  log: Logger;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Aborts when the worker stops: broker writes then give up after a few more attempts. */
  stopping: AbortSignal;
  /** Moves a scheduled retry back to the stream once it is due. */
  schedulePromotion: (delayMs: number) => void;
  /** Called after each job ends here, for metrics. */
  onFinished?: (status: string, job: JobRecord | null) => void;
  /** Called once the broker stored a job's terminal outcome written here (to tell other services). */
  onTerminal?: TerminalHook;
  /** Called after each provider call with its outcome and what it cost (USD), for metrics. */
  onProvider?: (outcome: ProviderOutcome, costUsd: number) => void;
  /** This process's hold after a 429: no provider call before then (ms since the epoch). */
  held: { until: number };
  /** The image store, when one keeps the images (written before the terminal write). */
  images?: JobImages;
}

/** How a provider call ended, as metrics count it. */
export type ProviderOutcome = "succeeded" | "rate_limited" | "retryable" | "failed";

/** The wait a 429 imposes when the provider names none. */
const DEFAULT_RETRY_AFTER_MS = 1_000;

/** Told of each terminal outcome this process stored; must return at once. */
export type TerminalHook = (jobId: string, outcome: Outcome) => void;

/** Calls the terminal hook, if any; a throwing hook is logged and never affects the job. */
export function reportTerminal(
  deps: { onTerminal?: TerminalHook; log: Logger },
  jobId: string,
  outcome: Outcome,
): void {
  try {
    deps.onTerminal?.(jobId, outcome);
  } catch (error) {
    deps.log.error("Cannot report the end of job {id}: {error}", {
      id: jobId,
      error: String(error),
    });
  }
}

/** Calls the provider for the job and writes what came of it, once. */
export async function runJob(flight: InFlight, job: JobRecord, deps: RunDeps): Promise<void> {
  const { provider } = deps;
  const signal = flight.controller.signal;
  let outcome: Outcome;
  try {
    signal.throwIfAborted();
    // A 429 seen here a moment ago: the calls already granted wait it out too.
    const hold = deps.held.until - Date.now();
    if (hold > 0) await pause(hold, signal);
    signal.throwIfAborted();
    const image = await provider.generate(await providerRequest(job, deps.broker), { signal });
    signal.throwIfAborted();
    const costUsdTicks = image.costUsdTicks ?? 0;
    const usage = { images: 1 + (image.more?.length ?? 0), costUsdTicks };
    outcome = { ...succeeded(image), usage };
    deps.onProvider?.("succeeded", costUsdTicks / TICKS_PER_USD);
  } catch (error) {
    if (!signal.aborted) deps.onProvider?.(providerOutcome(error), 0);
    return await failed(flight, job, error, deps);
  }
  try {
    outcome = await keepImages(job, outcome, deps, signal);
  } catch (error) {
    return await failed(flight, job, error, deps); // the store failed: retried like a provider 5xx
  }
  await store(flight, job, outcome, deps);
}

/** Handles a provider call that threw: abandoned, canceled, retried later, or failed. */
async function failed(
  flight: InFlight,
  job: JobRecord,
  error: unknown,
  deps: RunDeps,
): Promise<void> {
  const { broker, log } = deps;
  const { delivery, controller: { signal } } = flight;
  const reason = error instanceof Error ? error.message : String(error);
  if (signal.aborted) {
    if (signal.reason === "shutdown") return; // left pending for a takeover
    if (signal.reason === "lost") {
      // Another consumer holds the entry now: it writes the outcome, this one writes nothing.
      log.info("Abandoned job {id}: its lease was taken over", { id: job.id });
      return deps.onFinished?.("superseded", job);
    }
    // Canceled while running: the cancel wrote the terminal event; this only acknowledges.
    flight.phase = "ending";
    return await persistWith(deps, "acknowledge a canceled job", () => broker.ack(delivery));
  }
  if (error instanceof RateLimitedError) return await busy(flight, job, error, deps);
  if (error instanceof RetryableError && job.attempts < deps.maxAttempts) {
    const delay = retryDelay(job.attempts, {
      baseMs: deps.backoffBaseMs,
      maxMs: deps.backoffMaxMs,
      retryAfterMs: error.retryAfterMs,
    });
    log.info("Retrying job {id} in {delay} ms: {reason}", { id: job.id, delay, reason });
    flight.phase = "ending";
    try {
      await persistWith(deps, "schedule a retry", () => broker.retryLater(delivery, delay, reason));
      deps.schedulePromotion(delay);
      return;
    } catch (cause) {
      if (isTransient(cause)) throw cause; // given up at shutdown: left pending for a takeover
      log.error("Cannot schedule a retry of job {id}, failing it: {error}", {
        id: job.id,
        error: String(cause),
      });
    }
  } else {
    log.warn("Job {id} failed: {reason}", { id: job.id, reason });
  }
  await store(flight, job, failure(error), deps);
}

/** How metrics count a provider call that threw. */
function providerOutcome(error: unknown): ProviderOutcome {
  if (error instanceof RateLimitedError) return "rate_limited";
  return error instanceof RetryableError ? "retryable" : "failed";
}

/**
 * The provider answered 429: every process waits out its Retry-After and slows down, and the job gives
 * its turn back (no attempt counted, first in its owner's line), never failing for it.
 */
async function busy(
  flight: InFlight,
  job: JobRecord,
  error: RateLimitedError,
  deps: RunDeps,
): Promise<void> {
  const { broker, log } = deps;
  const waitMs = error.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
  deps.held.until = Math.max(deps.held.until, Date.now() + waitMs);
  log.info("The provider is busy; job {id} waits {wait} ms for its turn again", {
    id: job.id,
    wait: waitMs,
  });
  try {
    await broker.throttle(waitMs);
  } catch (cause) {
    // The other processes learn of it from their own 429s; this one holds all the same.
    log.warn("Cannot share the provider's 429 with other processes: {error}", {
      error: String(cause),
    });
  }
  flight.phase = "ending";
  try {
    const reason = error.message;
    await persistWith(
      deps,
      "give the turn back",
      () => broker.retryLater(flight.delivery, 0, reason, { giveBack: true }),
    );
  } catch (cause) {
    if (isTransient(cause)) throw cause; // given up at shutdown: left pending for a takeover
    log.error("Cannot give the turn of job {id} back, failing it: {error}", {
      id: job.id,
      error: String(cause),
    });
    await store(flight, job, { type: "failed", error: PROCESSING_ERROR }, deps);
  }
}

/**
 * Writes the terminal outcome. A permanent error storing a success fails the job without its image; a
 * permanent error storing a failure releases the slot (the lease expires and the dead-letter path ends
 * the job), so no slot stays busy for good.
 */
async function store(
  flight: InFlight,
  job: JobRecord,
  outcome: Outcome,
  deps: RunDeps,
): Promise<void> {
  const { broker, log } = deps;
  flight.phase = "ending";
  try {
    const done = await persistWith(
      deps,
      `store the ${outcome.type} outcome`,
      () => broker.finish(flight.delivery, outcome),
    );
    if (!done) log.info("Job {id} was ended elsewhere; nothing stored", { id: job.id });
    else reportTerminal(deps, job.id, outcome);
    await settleImages(job, outcome, done, deps);
    deps.onFinished?.(done ? outcome.type : "superseded", job);
  } catch (error) {
    if (isTransient(error)) throw error; // given up at shutdown: left pending for a takeover
    if (outcome.type === "succeeded") {
      log.error("Cannot store the image of job {id}, failing it without: {error}", {
        id: job.id,
        error: String(error),
      });
      await settleImages(job, outcome, false, deps);
      return await store(flight, job, { type: "failed", error: PROCESSING_ERROR }, deps);
    }
    log.error("Cannot store the failure of job {id}, releasing it to its lease: {error}", {
      id: job.id,
      error: String(error),
    });
    deps.onFinished?.("abandoned", job);
  }
}

/** A broker write, retried while Redis is away (see persist). */
function persistWith<T>(deps: RunDeps, what: string, write: () => Promise<T>): Promise<T> {
  return persist(write, { what, log: deps.log, stopping: deps.stopping });
}
