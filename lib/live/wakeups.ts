/**
 * A process's push wake-ups over a broker that cannot block (Upstash): one subscription hears what the
 * scripts publish (see queue/wake_scripts.ts) and wakes the worker's claims and the relay's reader at
 * once; a slow safety poll (one script call, see queue/redis_probe.ts) catches a wake-up missed while
 * the subscription was down, and is what Deno.cron runs.
 */
import type { Logger } from "@logtape/logtape";
import type { Broker, ProbeResult } from "../queue/types.ts";

/**
 * What a listener hears: "j" work to claim, "f" a feed item, "c" a cancel, and from the safety poll
 * "s" retries due or leases stalled (a sweep is wanted) and "p" the feed moved since the last poll.
 */
export type WakeKind = "j" | "f" | "c" | "w" | "s" | "p";

/**
 * The longest idle wait of an outbox loop (webhooks, Socket.IO notices) while push wake-ups are live:
 * what a "w" wake-up can miss (a delivery whose lease lapsed in a process that died, a retry another
 * process scheduled) waits this long at most.
 */
export const PUSHED_IDLE_MS = 120_000;

/** What an outbox loop (webhooks, Socket.IO notices) needs of a process's wake-ups. */
export interface OutboxWakeups {
  readonly live: boolean;
  listen(fn: (kind: WakeKind) => void): () => void;
}

/**
 * Calls `nudge` at each wake-up that may mean an outbox has something due: a delivery added ("w"),
 * or the safety poll's sweep ("s"); returns the function that stops listening.
 */
export function onOutboxWakeup(
  wakeups: OutboxWakeups | undefined,
  nudge: () => void,
): (() => void) | undefined {
  return wakeups?.listen((kind) => {
    if (kind === "w" || kind === "s") nudge();
  });
}

/** The subscription a hub listens on (an UpstashSubscription, or a fake in tests). */
export interface WakeSource {
  /** True while a message published now would arrive. */
  readonly live: boolean;
  /** Stops listening; idempotent. */
  close(): Promise<void>;
}

/** Options of the hub. */
export interface WakeupsOptions {
  broker: Broker;
  log: Logger;
  /** Opens the subscription, handing each payload to `onMessage` and each (re)open to `onOpen`. */
  subscribe(handlers: { onMessage(payload: string): void; onOpen(): void }): WakeSource;
  /** How long a lease is: a taken entry idle this long counts as stalled. */
  leaseMs: number;
  /** Longest time between safety polls; 120 s by default. */
  safetyMs?: number;
}

/** One process's wake-ups: a subscription, its listeners and the safety poll. */
export class Wakeups {
  #o: WakeupsOptions;
  #listeners = new Set<(kind: WakeKind) => void>();
  #source: WakeSource | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #feeds = "";
  #probing: Promise<ProbeResult | null> | null = null;
  #closed = false;
  /** Safety polls run so far (each one script call). */
  probes = 0;

  constructor(options: WakeupsOptions) {
    const { safetyMs = 120_000 } = options;
    if (!(safetyMs > 0)) throw new RangeError("Cannot create the wake-ups: safetyMs must be > 0");
    this.#o = { ...options, safetyMs };
  }

  /** True while the subscription is open: waiting loops may then wait for a wake-up, not poll. */
  get live(): boolean {
    return !this.#closed && (this.#source?.live ?? false);
  }

  /** Calls `fn` with every wake-up; returns the function that stops it. */
  listen(fn: (kind: WakeKind) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Opens the subscription and schedules the safety poll. */
  start(): void {
    if (this.#source || this.#closed) return;
    this.#source = this.#o.subscribe({
      onMessage: (payload) => this.#emit(payload as WakeKind),
      // Whatever was published while the stream was down is lost: look once now.
      onOpen: () => void this.probe(),
    });
    this.#schedule();
  }

  #emit(kind: WakeKind): void {
    if (!["j", "f", "c", "w", "s", "p"].includes(kind)) return;
    for (const fn of this.#listeners) {
      try {
        fn(kind);
      } catch (error) {
        this.#o.log.warn("Cannot handle a wake-up: {error}", { error: String(error) });
      }
    }
  }

  #schedule(inMs = this.#o.safetyMs!): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.probe(), Math.min(inMs, this.#o.safetyMs!));
  }

  /**
   * When the next poll is due: sooner than the safety interval while something could need it that no
   * wake-up announces (a running job whose worker may die: a lease away; a retry whose timer was in a
   * process that may be gone: at its due time).
   */
  #nextPollMs(found: ProbeResult): number {
    let ms = this.#o.safetyMs!;
    if (found.taken > 0 || found.waiting > 0) ms = Math.min(ms, this.#o.leaseMs);
    if (found.nextDueMs >= 0) ms = Math.min(ms, found.nextDueMs + 50);
    return Math.max(50, ms);
  }

  /**
   * The safety poll: one script call, then wakes whoever has something to do (none when all is quiet).
   * Concurrent calls share one; each one moves the next timed poll a full interval away.
   */
  probe(): Promise<ProbeResult | null> {
    this.#probing ??= this.#probe().finally(() => this.#probing = null);
    return this.#probing;
  }

  async #probe(): Promise<ProbeResult | null> {
    this.#schedule();
    if (!this.#o.broker.probe || this.#closed) return null;
    try {
      this.probes++;
      const found = await this.#o.broker.probe(this.#o.leaseMs);
      this.#schedule(this.#nextPollMs(found));
      if (found.unclaimed > 0 || found.waiting > 0) this.#emit("j");
      if (found.due > 0 || found.stalled > 0) this.#emit("s");
      const feeds = found.feeds.join(",");
      if (feeds !== this.#feeds) {
        this.#feeds = feeds;
        this.#emit("p");
      }
      return found;
    } catch (error) {
      this.#o.log.warn("Cannot run the safety poll: {error}", { error: String(error) });
      return null;
    }
  }

  /** Closes the subscription and stops the safety poll; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
    await this.#source?.close();
  }
}
