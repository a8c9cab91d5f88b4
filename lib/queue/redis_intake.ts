/**
 * The intake mover (N > 1 partitions): entries other services add to `P jobs` are copied, fields and
 * all, to the jobs stream of their job id's partition, then acknowledged and deleted from the intake.
 */
import type { RedisArg, RedisReply } from "../redis/types.ts";
import { BlockingReader } from "./blocking_reader.ts";
import { toDelivery } from "./redis_codec.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import type { BlockOptions } from "./types.ts";

/** Entries moved per read. */
const BATCH = 100;

/** How long a partition remembers the intake entries it copied (a copy run again is skipped). */
const MARK_MS = 86_400_000;

/** Copies intake entries to their partitions, each once (see COPY_INTAKE); returns the intake ids. */
export async function copyIntake(ctx: RedisContext, entries: RedisReply[]): Promise<string[]> {
  const byPartition = new Map<number, RedisArg[]>();
  const ids: string[] = [];
  for (const entry of entries) {
    const [id, fields] = entry as [string, RedisReply[]];
    ids.push(id);
    // The same job id the delivery will carry, so the job's hash and its entry share a slot.
    const p = ctx.keys.partitionOf(toDelivery(entry, "").jobId);
    const values = (fields ?? []).map(String);
    byPartition.set(p, [...byPartition.get(p) ?? [], id, String(values.length), ...values]);
  }
  const now = Date.now();
  await Promise.all(
    [...byPartition].map(([p, args]) =>
      ctx.run("copyIntake", [ctx.keys.jobs(p), ctx.keys.intakeMarks(p)], [
        String(now),
        String(now - MARK_MS),
        ...args,
      ])
    ),
  );
  return ids;
}

/** Spreads the intake over the partitions; one per broker, used by the workers' mover loop. */
export class IntakeMover {
  #ctx: RedisContext;
  #reader: BlockingReader;
  #cursor = "0-0";
  #lastTakeover = 0;

  constructor(ctx: RedisContext) {
    this.#ctx = ctx;
    this.#reader = new BlockingReader(ctx.client);
  }

  /**
   * Moves up to one batch of intake entries, waiting up to `blockMs` for one; entries another mover
   * read but left unmoved for `idleMs` (it died between its two steps) are taken over first. Two
   * steps, not atomic: a crash between the copy and the acknowledgement leaves the entry pending in
   * the intake, so it is taken over later, and the partition's marks skip the second copy.
   */
  async move(consumer: string, options: BlockOptions & { idleMs: number }): Promise<number> {
    if (!this.#ctx.keys.tagged) return 0;
    const intake = this.#ctx.keys.intake;
    let entries: RedisReply[] = [];
    if (Date.now() - this.#lastTakeover >= options.idleMs / 2) {
      this.#lastTakeover = Date.now();
      const reply = await this.#ctx.grouped(() =>
        this.#ctx.client.send([
          "XAUTOCLAIM",
          intake,
          GROUP,
          consumer,
          String(options.idleMs),
          this.#cursor,
          "COUNT",
          String(BATCH),
        ])
      ) as RedisReply[];
      this.#cursor = String(reply[0]);
      entries = (reply[1] as RedisReply[]).filter((e) => Array.isArray(e) && e[1] !== null);
    }
    if (entries.length === 0) {
      const reply = await this.#ctx.grouped(() =>
        this.#reader.read(
          ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", String(BATCH)],
          ["STREAMS", intake, ">"],
          options,
        )
      );
      if (!Array.isArray(reply) || reply.length === 0) return 0;
      entries = (reply[0] as [string, RedisReply[]])[1];
    }
    return await this.#copy(entries);
  }

  /** Copies the entries to their partitions (one script per partition), then acks and deletes them. */
  async #copy(entries: RedisReply[]): Promise<number> {
    const ids = await copyIntake(this.#ctx, entries);
    const intake = this.#ctx.keys.intake;
    await this.#ctx.client.pipeline([["XACK", intake, GROUP, ...ids], ["XDEL", intake, ...ids]]);
    return ids.length;
  }

  /** Closes the dedicated connection. */
  close(): Promise<void> {
    return this.#reader.close();
  }
}
