/** Claims and takeovers of the Redis broker, per partition: blocking reads, sweeps and XAUTOCLAIM cursors. */
import { pause } from "../pause.ts";
import type { RedisReply } from "../redis/types.ts";
import { BlockingReader } from "./blocking_reader.ts";
import { toDelivery } from "./redis_codec.ts";
import { GROUP, type RedisContext } from "./redis_context.ts";
import { turn, turnOf } from "./redis_turns.ts";
import type { BlockOptions, Delivery } from "./types.ts";

/** How often a claim over every partition looks again while it waits (it cannot block on N keys). */
const SWEEP_POLL_MS = 50;
/** The shortest wait for the pace's next turn (a turn due sooner is asked for after this). */
const MIN_TURN_WAIT_MS = 10;
const NEVER = new AbortController().signal;

/** The entries of an XREADGROUP reply for one stream, as deliveries held by `consumer`. */
function deliveriesOf(reply: RedisReply | undefined, consumer: string, p: number): Delivery[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const [, entries] = reply[0] as [string, RedisReply[]];
  return entries.map((entry) => toDelivery(entry, consumer, 1, p));
}

/** Claims from one partition (a blocking read on its own connection) or from all of them in turn. */
export class ClaimOps {
  #ctx: RedisContext;
  #blocking: boolean;
  /** One dedicated connection per partition, so a claim loop per partition can block on each. */
  #readers: BlockingReader[];
  /** Where each partition's next reclaim resumes its scan of the pending entries (XAUTOCLAIM's cursor). */
  #cursors: string[];
  /** The partition the next sweep or reclaim starts with, so that none is always last. */
  #next = 0;
  /** The deployment's pace as the last turn saw it (null: unpaced). */
  pace: number | null = null;
  /** Jobs left in the partition's waiting room as the last turn saw them. */
  waiting = 0;

  constructor(ctx: RedisContext, blocking: boolean) {
    this.#ctx = ctx;
    this.#blocking = blocking;
    this.#readers = ctx.all.map(() => new BlockingReader(ctx.client));
    this.#cursors = ctx.all.map(() => "0-0");
  }

  /** Partitions in turn, starting one further each call. */
  #rotation(): number[] {
    const n = this.#ctx.partitions;
    const first = this.#next;
    this.#next = (this.#next + 1) % n;
    return Array.from({ length: n }, (_, i) => (first + i) % n);
  }

  /** Takes up to `count` new entries, of `options.partition` or (absent, N > 1) of every partition. */
  async claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    if (options.partition !== undefined || this.#ctx.partitions === 1) {
      return await this.#claimOne(options.partition ?? 0, consumer, count, options);
    }
    // Over every partition: no single blocking read can wait on N slots, so sweep, and poll while
    // waiting (workers run one blocking loop per partition instead; this serves callers that do not).
    const deadline = Date.now() + Math.max(0, options.blockMs);
    while (true) {
      const found = await this.#sweep(consumer, count);
      if (found.length > 0 || !this.#blocking || options.signal?.aborted) return found;
      const left = deadline - Date.now();
      if (left <= 0) return [];
      await pause(Math.min(SWEEP_POLL_MS, left), options.signal ?? NEVER);
    }
  }

  /**
   * First the waiting room's turns, as many as wanted; then the read, which blocks no longer than the
   * pace's next turn while jobs wait for one (or the pace is busy), and turns again after it.
   */
  async #claimOne(p: number, consumer: string, count: number, options: BlockOptions) {
    const deadline = Date.now() + Math.max(0, options.blockMs);
    if (!this.#blocking) {
      // Over REST nothing blocks: while jobs wait for the pace's next turn, wait for it here (the
      // caller's poll would back off for seconds, and no wake-up comes for a turn coming due).
      while (true) {
        const { found, given } = await this.#turnAndRead(p, consumer, count);
        const soon = given.moved === 0 && given.waiting > 0 && given.waitMs > 0;
        const left = deadline - Date.now();
        if (found.length > 0 || !soon || left <= 0 || options.signal?.aborted) return found;
        await pause(
          Math.min(left, Math.max(MIN_TURN_WAIT_MS, given.waitMs)),
          options.signal ?? NEVER,
        );
      }
    }
    while (true) {
      const given = await this.#turn(p, count);
      const soon = given.moved === 0 && (given.waiting > 0 || given.waitMs > 0);
      const left = deadline - Date.now();
      const blockMs = soon ? Math.min(left, Math.max(MIN_TURN_WAIT_MS, given.waitMs)) : left;
      const reply = await this.#ctx.grouped(() =>
        this.#readers[p].read(
          ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", String(count)],
          ["STREAMS", this.#ctx.keys.jobs(p), ">"],
          { blockMs, signal: options.signal },
        )
      );
      const found = deliveriesOf(reply, consumer, p);
      const again = soon && Date.now() < deadline && !options.signal?.aborted;
      if (found.length > 0 || !again) return found;
    }
  }

  /** Over a broker that cannot block: the turns and the read in one script call. */
  async #turnAndRead(p: number, consumer: string, count: number) {
    const k = this.#ctx.keys;
    const keys = [k.room(p), k.clock(p), k.jobs(p), k.pace(p)];
    const args = [String(count), this.#ctx.paceCap, k.jobPrefix(p), GROUP, consumer, String(count)];
    const reply = await this.#ctx.grouped(() =>
      this.#ctx.run("turnClaim", keys, args)
    ) as RedisReply[];
    const given = turnOf(this.#ctx, reply[0]);
    this.pace = given.pace;
    this.waiting = given.waiting;
    return { found: deliveriesOf(reply[1], consumer, p), given };
  }

  async #turn(p: number, want: number) {
    const given = await turn(this.#ctx, p, want);
    this.pace = given.pace;
    this.waiting = given.waiting;
    return given;
  }

  /** One non-blocking claim per partition in turn, each for what is still wanted, until `count`. */
  async #sweep(consumer: string, count: number): Promise<Delivery[]> {
    const out: Delivery[] = [];
    for (const p of this.#rotation()) {
      if (out.length >= count) break;
      if (!this.#blocking) {
        out.push(...(await this.#turnAndRead(p, consumer, count - out.length)).found);
        continue;
      }
      await this.#turn(p, count - out.length);
      const reply = await this.#ctx.grouped(() =>
        this.#ctx.client.send([
          "XREADGROUP",
          "GROUP",
          GROUP,
          consumer,
          "COUNT",
          String(count - out.length),
          "STREAMS",
          this.#ctx.keys.jobs(p),
          ">",
        ])
      );
      out.push(...deliveriesOf(reply, consumer, p));
    }
    return out;
  }

  /** Takes over idle entries, partition by partition in turn, each scan resuming where it stopped. */
  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    const out: Delivery[] = [];
    const failures: unknown[] = [];
    const order = this.#rotation();
    for (const p of order) {
      if (out.length >= count) break;
      // A partition whose master is down is skipped: the others' stalled jobs are still taken over.
      try {
        out.push(...await this.#reclaimOne(p, consumer, idleMs, count - out.length));
      } catch (error) {
        failures.push(error);
        this.#ctx.report(`take over stalled jobs of partition ${p}`, error);
      }
    }
    if (failures.length === order.length) throw failures[0];
    return out;
  }

  async #reclaimOne(p: number, consumer: string, idleMs: number, count: number) {
    const jobs = this.#ctx.keys.jobs(p);
    const reply = await this.#ctx.grouped(() =>
      this.#ctx.client.send([
        "XAUTOCLAIM",
        jobs,
        GROUP,
        consumer,
        String(idleMs),
        this.#cursors[p],
        "COUNT",
        String(count),
      ])
    ) as RedisReply[];
    this.#cursors[p] = String(reply[0]);
    const entries = (reply[1] as RedisReply[]).filter((e) => Array.isArray(e) && e[1] !== null);
    if (entries.length === 0) return [];
    const ids = entries.map((entry) => String((entry as RedisReply[])[0]));
    const pending = await this.#ctx.client.pipeline(
      ids.map((id) => ["XPENDING", jobs, GROUP, id, id, "1"]),
    );
    return entries.map((entry, i) => {
      const row = pending[i];
      if (row instanceof Error) throw row;
      const found = Array.isArray(row) && Array.isArray(row[0]) ? Number(row[0][3]) : NaN;
      return toDelivery(entry, consumer, Number.isFinite(found) ? found : 2, p);
    });
  }

  /** Closes the dedicated connections. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#readers.map((reader) => reader.close()));
  }
}
