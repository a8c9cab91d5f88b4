/**
 * Moves a deployment's jobs from one partition count to another (`deno task migrate-partitions`): job
 * and references hashes, queued and running stream entries, delayed retries, parked jobs, webhook
 * deliveries and (between one untagged partition and tagged ones) the owners' keys. Every process of
 * the deployment must be stopped: the migration waits until the workers' consumers have been idle for
 * a lease (so no lease is held), refuses if they stay busy, and takes one lock so that two migrations
 * never run at once. The partition record says "<from>><to>" while it runs, so nothing starts over a
 * half-moved layout, and a migration that died halfway is run again to finish.
 */
import { pause } from "../pause.ts";
import { defineScript, type RedisClient, type RedisReply } from "../redis/types.ts";
import { layoutKey, type LayoutState, migrationLockKey, parseLayout } from "./layout_record.ts";
import { KeyLayout } from "./partitions.ts";
import { GROUP } from "./redis_context.ts";
import {
  type MoveContext,
  movedMarks,
  moveEntries,
  moveHashes,
  moveRooms,
  moveScripts,
  moveSorted,
} from "./migrate_moves.ts";
import { moveOwners } from "./migrate_owners.ts";
import { DROP_LOCK, HOLD_LOCK } from "./scripts_migrate.ts";

/** Options of migratePartitions. */
export interface MigrateOptions {
  prefix: string;
  /** The new partition count (the deployment's new `JOB_PARTITIONS`). */
  to: number;
  /** The count the jobs were made with, when Redis holds no record of it (older deployments). */
  from?: number;
  /** True on a Redis Cluster (every partition tagged). */
  cluster?: boolean;
  /** The workers' lease (`JOB_LEASE_MS`): how long consumers must have been idle. */
  leaseMs: number;
  /** How long to wait for the workers to go idle before giving up (default 2 leases + 5 s). */
  quietTimeoutMs?: number;
  /** Told of each step; a test seam too (throwing from it stops the migration there). */
  onStep?: (what: string) => void | Promise<void>;
}

/** What a migration moved. */
export interface MigrateReport {
  from: number;
  to: number;
  /** False when the record already said `to` (nothing to do). */
  migrated: boolean;
  hashes: number;
  entries: number;
  delayed: number;
  parked: number;
  webhooks: number;
  /** Socket.IO notices waiting for the bridge. */
  notices: number;
  owners: number;
}

/** Raised when a migration cannot run; the message says why and what to do. */
export class MigrationError extends Error {
  override name = "MigrationError";
}

const LOCK_MS = 60_000;

/** Moves the jobs laid out for the recorded partition count to `options.to` partitions. */
export async function migratePartitions(
  client: RedisClient,
  options: MigrateOptions,
): Promise<MigrateReport> {
  const { prefix, to } = options;
  const token = crypto.randomUUID();
  const lock = migrationLockKey(prefix);
  const got = await client.send(["SET", lock, token, "NX", "PX", String(LOCK_MS)]);
  if (got === null) {
    throw new MigrationError(
      `Cannot migrate partitions: another migration holds the lock ${lock}; let it finish`,
    );
  }
  const [hold, drop] = await Promise.all([defineScript(HOLD_LOCK), defineScript(DROP_LOCK)]);
  try {
    const state = parseLayout(await client.send(["GET", layoutKey(prefix)]));
    const from = sourceOf(state, options);
    const counts = {
      hashes: 0,
      entries: 0,
      delayed: 0,
      parked: 0,
      webhooks: 0,
      notices: 0,
      owners: 0,
    };
    if (from === to) return { from, to, migrated: false, ...counts };
    const step = async (what: string) => {
      await options.onStep?.(what);
      if (await client.eval(hold, [lock], [token, String(LOCK_MS)]) !== 1) {
        throw new MigrationError(`Cannot migrate partitions: the lock ${lock} was lost`);
      }
    };
    const tagged = (n: number) => n > 1 || options.cluster === true;
    const mc: MoveContext = {
      client,
      from: new KeyLayout(prefix, from, { tagged: tagged(from) }),
      to: new KeyLayout(prefix, to, { tagged: tagged(to) }),
      scripts: await moveScripts(defineScript),
      cluster: options.cluster === true,
      step,
    };
    await waitForIdle(mc, options);
    await step("mark");
    // From here nothing starts (the record names a migration); one started just before is caught here.
    await client.send(["SET", layoutKey(prefix), `${from}>${to}`]);
    const busy = await busiest(mc, options.leaseMs);
    if (busy) {
      if (state.kind === "settled") await client.send(["SET", layoutKey(prefix), String(from)]);
      throw busyError(busy);
    }
    const result = await migrate(mc);
    await client.send(["SET", layoutKey(prefix), String(to)]);
    return { from, to, migrated: true, ...result };
  } finally {
    await client.eval(drop, [lock], [token]).catch(() => {});
  }
}

/** The count to migrate from: the record's, or the caller's when there is none. */
function sourceOf(state: LayoutState, options: MigrateOptions): number {
  if (state.kind === "settled") return state.partitions;
  if (state.kind === "migrating") {
    if (state.to !== options.to) {
      throw new MigrationError(
        `Cannot migrate partitions to JOB_PARTITIONS=${options.to}: a migration from ` +
          `${state.from} to ${state.to} has not finished; run it again with JOB_PARTITIONS=${state.to}`,
      );
    }
    return state.from;
  }
  if (options.from === undefined) {
    throw new MigrationError(
      "Cannot migrate partitions: Redis holds no recorded JOB_PARTITIONS; pass --from=<the count " +
        "the jobs were made with>",
    );
  }
  return options.from;
}

/** The moves in order: hashes first (the entries' and rooms' scripts update them), then the rest. */
async function migrate(mc: MoveContext) {
  await createGroups(mc);
  const hashes = await moveHashes(mc);
  const entries = await moveEntries(mc);
  const delayed = await moveSorted(mc, (l, p) => l.delayed(p), (member) => member);
  const webhooks = await moveSorted(mc, (l, p) => l.webhooks(p), (m) => m.split(" ")[0]);
  const notices = await moveSorted(mc, (l, p) => l.notices(p), (m) => m.split(" ")[0]);
  const parked = await moveRooms(mc);
  const owners = await moveOwners(mc);
  await mc.step("clean up");
  await cleanUp(mc);
  return { hashes, entries, delayed, parked, webhooks, notices, owners };
}

/** The old layout's streams the workers read (each partition's, and the intake when separate). */
function oldStreams(mc: MoveContext): string[] {
  const streams = Array.from({ length: mc.from.partitions }, (_, p) => mc.from.jobs(p));
  if (mc.from.tagged) streams.push(mc.from.intake);
  return streams;
}

/** The consumer of the old streams seen most recently within a lease, or null when all are idle. */
async function busiest(mc: MoveContext, leaseMs: number) {
  let found: { stream: string; name: string; idle: number } | null = null;
  for (const stream of oldStreams(mc)) {
    for (const consumer of await consumersOf(mc.client, stream)) {
      if (consumer.idle < leaseMs && (!found || consumer.idle < found.idle)) {
        found = { stream, ...consumer };
      }
    }
  }
  return found;
}

function busyError(busy: { stream: string; name: string; idle: number }): MigrationError {
  return new MigrationError(
    `Cannot migrate partitions: worker ${busy.name} read ${busy.stream} ${busy.idle} ms ago; ` +
      `stop every process of the deployment first (leases run out after JOB_LEASE_MS)`,
  );
}

/**
 * Waits until every consumer of the old streams has been idle for a lease: then no worker runs (a live
 * one reads at least once a lease) and every lease ran out; throws when they stay busy.
 */
async function waitForIdle(mc: MoveContext, options: MigrateOptions): Promise<void> {
  const deadline = Date.now() + (options.quietTimeoutMs ?? options.leaseMs * 2 + 5_000);
  while (true) {
    await mc.step("wait for idle workers");
    const busy = await busiest(mc, options.leaseMs);
    if (!busy) return;
    const wait = options.leaseMs - busy.idle + 50;
    if (Date.now() + wait > deadline) throw busyError(busy);
    await pause(wait, new AbortController().signal);
  }
}

/** The consumers of a stream's group with their idle time ([] when the stream or group is missing). */
async function consumersOf(client: RedisClient, stream: string) {
  let rows: RedisReply;
  try {
    rows = await client.send(["XINFO", "CONSUMERS", stream, GROUP]);
  } catch (error) {
    if (error instanceof Error && /NOGROUP|no such key/i.test(error.message)) return [];
    throw error;
  }
  return (rows as RedisReply[][]).map((row) => {
    const fields = new Map<string, RedisReply>();
    for (let i = 0; i + 1 < row.length; i += 2) fields.set(String(row[i]), row[i + 1]);
    return { name: String(fields.get("name")), idle: Number(fields.get("idle") ?? 0) };
  });
}

/** Creates the new layout's streams and their group, unless they exist. */
async function createGroups(mc: MoveContext): Promise<void> {
  const streams = Array.from({ length: mc.to.partitions }, (_, p) => mc.to.jobs(p));
  if (mc.to.tagged) streams.push(mc.to.intake);
  for (const stream of streams) {
    await mc.client.send(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]).catch((error) => {
      if (!(error instanceof Error && error.message.includes("BUSYGROUP"))) throw error;
    });
  }
}

/** The per-partition keys of a layout that the migration empties (feeds and dead letters stay). */
function partitionKeys(layout: KeyLayout): string[] {
  const keys: string[] = [];
  for (let p = 0; p < layout.partitions; p++) {
    keys.push(layout.jobs(p), layout.delayed(p), layout.webhooks(p), layout.notices(p));
    keys.push(layout.room(p));
    keys.push(layout.clock(p), layout.pace(p), layout.intakeMarks(p));
  }
  if (layout.tagged) keys.push(layout.intake);
  return keys;
}

/** Deletes the old layout's keys the new one does not use, and the marks of moved entries. */
async function cleanUp(mc: MoveContext): Promise<void> {
  const kept = new Set(partitionKeys(mc.to));
  for (const key of partitionKeys(mc.from).filter((key) => !kept.has(key))) {
    await mc.client.send(["DEL", key]);
  }
  for (let q = 0; q < mc.to.partitions; q++) await mc.client.send(["DEL", movedMarks(mc.to, q)]);
}
