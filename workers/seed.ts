/**
 * A stream entry before it runs: entries with an invalid Id or delivered too often are dead-lettered,
 * entries other services add with the seed's fields `Token`, `Prompt` and `Id` are adopted, and the job
 * is started.
 */
import { decodeJwt } from "jose";
import type { Logger } from "@logtape/logtape";
import { PROCESSING_ERROR, SESSION_EXPIRED } from "../lib/live/notifications.ts";
import { type Broker, type Delivery, JOB_ID, type JobRecord } from "../lib/queue/types.ts";
import { reportTerminal, type TerminalHook } from "./job_run.ts";
import { persist } from "./retry.ts";

/** What adopting a seed entry needs. */
export interface SeedDeps {
  broker: Broker;
  verifyToken: (token: string) => Promise<{ sub: string }>;
  log: Logger;
  /** Called once the broker stored a refused entry's failure (to tell other services). */
  onTerminal?: TerminalHook;
}

/** True when a stream entry's `Id` is a valid job id (anything else is dead-lettered unread). */
export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

/** The `sub` a token names, read without verifying it (only to show a refusal to that subject). */
function unverifiedSubject(token: string): string {
  try {
    const sub = decodeJwt(token).sub;
    return typeof sub === "string" && sub.length <= 256 ? sub : "";
  } catch {
    return "";
  }
}

/**
 * Turns a seed entry into a job and verifies its token as the seed service did: `run` when the job
 * should run, `refused` when it failed with the seed's message, `ignored` when its id belongs to
 * another job (acknowledged, nothing overwritten).
 */
export async function adoptSeed(
  delivery: Delivery,
  deps: SeedDeps,
): Promise<"run" | "refused" | "ignored"> {
  const { broker, verifyToken, log } = deps;
  const { token, prompt } = delivery.seed!;
  let owner = "";
  let refused = false;
  try {
    owner = (await verifyToken(token)).sub;
  } catch {
    owner = unverifiedSubject(token);
    refused = true;
  }
  const trimmed = prompt.trim().slice(0, 4000);
  if (!(await broker.adoptSeed(delivery, { owner, prompt: trimmed }))) {
    // A redelivery of an entry we already adopted carries the same owner and prompt.
    const existing = await broker.get(delivery.jobId);
    if (existing?.owner !== owner || existing.prompt !== trimmed) {
      log.warn("Ignoring stream entry for existing job {id}", { id: delivery.jobId });
      await broker.ack(delivery);
      return "ignored";
    }
  }
  if (refused || !trimmed) {
    const error = refused ? SESSION_EXPIRED : PROCESSING_ERROR;
    const reason = refused ? "the token is invalid or expired" : "the prompt is empty";
    log.info("Refusing stream entry for job {id}: {reason}", { id: delivery.jobId, reason });
    const outcome = { type: "failed" as const, error };
    if (await broker.finish(delivery, outcome)) reportTerminal(deps, delivery.jobId, outcome);
    return "refused";
  }
  return "run";
}

/** What taking in an entry needs besides adopting seeds. */
export interface IntakeDeps extends SeedDeps {
  maxAttempts: number;
  /** Called when a seed entry is refused (its job failed without running). */
  onRefused?: () => void;
}

/**
 * Takes in a delivery and starts its job: the job to run, or null when there is nothing to run here
 * (dead-lettered, refused, a duplicate entry, an ended job, or `signal` aborted because the lease was lost).
 */
export async function intake(
  delivery: Delivery,
  deps: IntakeDeps,
  signal: AbortSignal,
): Promise<JobRecord | null> {
  const { broker, log } = deps;
  if (!isJobId(delivery.jobId)) {
    log.warn("Dead-lettering stream entry {entry}: its Id is not a valid job id", {
      entry: delivery.entryId,
    });
    await broker.deadLetter(delivery, "The entry's Id is not a valid job id");
    return null;
  }
  if (delivery.deliveries > deps.maxAttempts + 2) {
    const reason = `Delivered ${delivery.deliveries} times without finishing`;
    log.warn("Dead-lettering job {id}: {reason}", { id: delivery.jobId, reason });
    if (await broker.deadLetter(delivery, reason)) {
      reportTerminal(deps, delivery.jobId, { type: "failed", error: PROCESSING_ERROR });
    }
    return null;
  }
  if (delivery.seed) {
    const verdict = await adoptSeed(delivery, deps);
    if (verdict === "refused") deps.onRefused?.();
    if (verdict !== "run" || signal.aborted) return null;
    // The adopted job takes its owner's turn like any other: it waits in the room, and comes back
    // onto the stream as a plain entry when its turn comes.
    await broker.park(delivery);
    return null;
  }
  if (signal.aborted) return null; // lost during the intake: the consumer holding the entry runs it
  // Retried while Redis is away (START run twice counts one more attempt, nothing else): dropping
  // the delivery would leave its entry to a takeover a whole lease later.
  const job = await persist(() => broker.start(delivery), {
    what: `start job ${delivery.jobId}`,
    log,
    stopping: signal,
  });
  if (!job) {
    log.info("Acknowledging entry {entry}: job {id} is ended or run by another entry", {
      entry: delivery.entryId,
      id: delivery.jobId,
    });
    await broker.ack(delivery);
  }
  return job;
}
