/**
 * The worker's claim loops: one per partition on a blocking broker with N > 1 (each blocks on its own
 * connection), else one over every partition, sharing the worker's free slots; and the intake mover.
 */
import type { Logger } from "@logtape/logtape";
import { pause, Wakeable } from "../lib/pause.ts";
import type { Broker, Delivery } from "../lib/queue/types.ts";
import type { Wakeups } from "../lib/live/wakeups.ts";

/** With wake-ups live, how long an idle claim loop waits for one (the safety poll wakes it sooner). */
const PUSHED_IDLE_MS = 600_000;

/** What the loops need from their worker. */
export interface ClaimLoopDeps {
  broker: Broker;
  log: Logger;
  consumer: string;
  blockMs: number;
  idlePollMaxMs: number;
  leaseMs: number;
  stop: AbortSignal;
  /** Slots free for new deliveries now (concurrency minus running and waiting ones). */
  free(): number;
  /** Takes a claimed delivery: runs it, or keeps it until a slot frees. */
  admit(delivery: Delivery): void;
  /** Push wake-ups (Upstash): an idle loop then waits for one instead of polling. */
  wakeups?: Wakeups;
}

/**
 * Runs the claim loops until `stop` aborts. Fairness: every loop that wants slots is woken when one
 * frees, each asks for its share (a loop whose partition was empty last time asks for one), so a busy
 * partition never holds the slots that another partition's jobs wait for; claims that land together
 * may bring up to N − 1 more than the free slots, which wait in the worker's FIFO, under lease.
 */
export class ClaimLoops {
  #d: ClaimLoopDeps;
  #waiters = new Set<() => void>();
  /** Polling pauses end early when new work was submitted in this process. */
  readonly idle = new Wakeable();

  constructor(deps: ClaimLoopDeps) {
    this.#d = deps;
  }

  /** Starts the loops; resolves when they have all stopped. */
  async run(): Promise<void> {
    const { broker } = this.#d;
    const split = broker.blocking && broker.partitions > 1;
    const loops = split
      ? Array.from({ length: broker.partitions }, (_, p) => this.#claimLoop(p, broker.partitions))
      : [this.#claimLoop(undefined, 1)];
    if (broker.separateIntake) loops.push(this.#moveLoop());
    await Promise.all(loops);
  }

  /** Tells the loops waiting for a slot that one (or more) freed. */
  slotFreed(): void {
    if (this.#d.free() <= 0 && !this.#d.stop.aborted) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * How long a non-blocking loop pauses after finding nothing: its backoff, or, with wake-ups live and
   * no job waiting for a provider turn, until a wake-up (a submit, a due retry, the safety poll).
   */
  #idleWait(backoffMs: number): number {
    const { wakeups, broker } = this.#d;
    return wakeups?.live && !((broker.waiting ?? 0) > 0) ? PUSHED_IDLE_MS : backoffMs;
  }

  async #claimLoop(partition: number | undefined, loops: number): Promise<void> {
    const { broker, log, consumer, stop } = this.#d;
    let idleMs = 0;
    let empty = false;
    while (!stop.aborted) {
      const free = this.#d.free();
      if (free <= 0) {
        await new Promise<void>((resolve) => this.#waiters.add(resolve));
        continue;
      }
      try {
        const count = loops === 1 ? free : empty ? 1 : Math.max(1, Math.floor(free / loops));
        const options = { blockMs: this.#d.blockMs, signal: stop, partition };
        const batch = await broker.claim(consumer, count, options);
        empty = batch.length === 0;
        for (const delivery of batch) this.#d.admit(delivery);
        // Without server-side blocking, poll fast while there is work and slow down when idle.
        idleMs = batch.length > 0 ? 0 : Math.min(Math.max(100, idleMs * 2), this.#d.idlePollMaxMs);
        // Pushed: a claim that got less than it asked for emptied the stream, and the next job comes
        // with a wake-up (unless jobs wait for a turn of the pace).
        const drained = batch.length < count && this.#d.wakeups?.live;
        if (!broker.blocking && (idleMs > 0 || drained)) {
          await this.idle.sleep(this.#idleWait(idleMs || 100), stop);
        }
      } catch (error) {
        log.warn("Cannot claim jobs: {error}", { error: String(error) });
        await pause(1_000, stop);
      }
    }
  }

  /** With N > 1 partitions, moves entries other services add to the intake onto the partitions. */
  async #moveLoop(): Promise<void> {
    const { broker, log, consumer, stop } = this.#d;
    let idleMs = 0;
    while (!stop.aborted) {
      try {
        const options = { blockMs: this.#d.blockMs, signal: stop, idleMs: this.#d.leaseMs };
        const moved = await broker.moveIntake(consumer, options);
        idleMs = moved > 0 ? 0 : Math.min(Math.max(100, idleMs * 2), this.#d.idlePollMaxMs);
        if (!broker.blocking && idleMs > 0) await this.idle.sleep(this.#idleWait(idleMs), stop);
      } catch (error) {
        log.warn("Cannot move intake entries: {error}", { error: String(error) });
        await pause(1_000, stop);
      }
    }
  }
}
