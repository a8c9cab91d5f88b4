/** Entries other services add to the jobs stream with the seed's fields `Token`, `Prompt` and `Id`. */
import { decodeJwt } from "jose";
import type { Logger } from "@logtape/logtape";
import { PROCESSING_ERROR, SESSION_EXPIRED } from "../lib/notifications.ts";
import type { Broker, Delivery } from "../lib/queue/types.ts";

/** What adopting a seed entry needs. */
export interface SeedDeps {
  broker: Broker;
  verifyToken: (token: string) => Promise<{ sub: string }>;
  log: Logger;
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
  { broker, verifyToken, log }: SeedDeps,
): Promise<"run" | "refused" | "ignored"> {
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
    const reason = refused ? "The token is invalid or expired" : "The prompt is empty";
    await broker.finish(delivery, { type: "failed", error, reason });
    return "refused";
  }
  return "run";
}
