/**
 * The deployment's partition count, kept in Redis (`P{layout}partitions`, a key with its own hash tag):
 * the first process to start records its `JOB_PARTITIONS`; one started with another value refuses to
 * start, since a job id's partition (and so its keys) follows from the count.
 */
import { ConfigError } from "../config.ts";
import type { RedisClient } from "../redis/types.ts";

/** The key that holds the partition count ("3"), or a migration under way ("2>3"). */
export function layoutKey(prefix: string): string {
  return `${prefix}{layout}partitions`;
}

/** The lock a migration holds while it runs (one migration at a time). */
export function migrationLockKey(prefix: string): string {
  return `${prefix}{layout}migrating`;
}

/** What the record says: a settled count, or a migration from one count to another. */
export type LayoutState =
  | { kind: "none" }
  | { kind: "settled"; partitions: number }
  | { kind: "migrating"; from: number; to: number };

/** Reads a record's value. */
export function parseLayout(value: unknown): LayoutState {
  if (value === null || value === undefined) return { kind: "none" };
  const text = String(value);
  const moving = /^(\d+)>(\d+)$/.exec(text);
  if (moving) return { kind: "migrating", from: Number(moving[1]), to: Number(moving[2]) };
  if (/^\d+$/.test(text)) return { kind: "settled", partitions: Number(text) };
  throw new ConfigError(`Cannot start: the partition record ${text} in Redis is not understood`);
}

/** Raised when this process's JOB_PARTITIONS does not match the jobs' layout in Redis. */
export class PartitionsChangedError extends ConfigError {
  override name = "PartitionsChangedError";
}

/** The refusal to start with `partitions` over a record in state `state`; null when it matches. */
export function layoutRefusal(state: LayoutState, partitions: number): string | null {
  if (state.kind === "migrating") {
    return `Cannot start: a migration of JOB_PARTITIONS from ${state.from} to ${state.to} has not ` +
      `finished; run it again with JOB_PARTITIONS=${state.to} deno task migrate-partitions`;
  }
  if (state.kind === "settled" && state.partitions !== partitions) {
    return `Cannot start: JOB_PARTITIONS is ${partitions} but the jobs in Redis are laid out for ` +
      `JOB_PARTITIONS=${state.partitions}; start with JOB_PARTITIONS=${state.partitions}, or stop ` +
      `every process and run JOB_PARTITIONS=${partitions} deno task migrate-partitions`;
  }
  return null;
}

/**
 * Records `partitions` when Redis holds no count yet, else checks it against the recorded one;
 * throws PartitionsChangedError (naming JOB_PARTITIONS and both values) when they differ.
 */
export async function checkPartitions(
  client: RedisClient,
  prefix: string,
  partitions: number,
): Promise<void> {
  const key = layoutKey(prefix);
  const [set, value] = await client.pipeline([
    ["SET", key, String(partitions), "NX"],
    ["GET", key],
  ]);
  if (set instanceof Error) throw set;
  if (value instanceof Error) throw value;
  const refusal = layoutRefusal(parseLayout(value), partitions);
  if (refusal) throw new PartitionsChangedError(refusal);
}
