/** The image worker: claims jobs, keeps their leases, calls the provider, and finishes each job once. */
import type { Logger } from "@logtape/logtape";
import type { ImageProvider } from "../lib/provider/grok.ts";
import type { Broker, Delivery, JobRecord, LeaseStatus } from "../lib/queue/types.ts";
import {
  type InFlight,
  type ProviderOutcome,
  type RunDeps,
  runJob,
  type TerminalHook,
} from "./job_run.ts";
import { intake } from "./seed.ts";
import { ClaimLoops } from "./claim_loops.ts";
import type { Wakeups } from "../lib/live/wakeups.ts";

/** Dependencies and settings of a worker. */
export interface ImageWorkerOptions {
  broker: Broker;
  provider: ImageProvider;
  /** Verifies a seed entry's token and returns its subject. */
  verifyToken: (token: string) => Promise<{ sub: string }>;
  log: Logger;
  concurrency: number;
  leaseMs: number;
  maxAttempts: number;
  consumer?: string;
  /** How long one blocking claim waits. */
  blockMs?: number;
  /** Base and cap of the exponential retry backoff (full jitter). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Longest pause between polls when the broker cannot block (REST) and the queue is idle. */
  idlePollMaxMs?: number;
  /** With a non-blocking broker, how often an idle worker sweeps stalled leases and due retries. */
  idleSweepMs?: number;
  /** Called after each job ends here, for metrics. */
  onFinished?: (status: string, job: JobRecord | null) => void;
  /** Called once the broker stored a terminal outcome this worker wrote; must return at once. */
  onTerminal?: TerminalHook;
  /** Called after each provider call with its outcome and cost (USD), for metrics. */
  onProvider?: (outcome: ProviderOutcome, costUsd: number) => void;
  /** Told of the deployment's pace after each turn (null: unpaced), for metrics. */
  onPace?: (pace: number | null) => void;
  /** The image store, when one keeps the images (written before the job's terminal write). */
  images?: RunDeps["images"];
  /**
   * Push wake-ups (Upstash): idle claims wait for one instead of polling, a cancel renews at once, and
   * an idle worker sweeps only when the safety poll finds something to sweep.
   */
  wakeups?: Wakeups;
}

/** Consumers idle this long with nothing pending are removed, at least (a live one claims every few seconds). */
const PRUNE_IDLE_MIN_MS = 60_000;

/** Runs jobs from the broker with bounded concurrency until closed. */
export class ImageWorker {
  readonly consumer: string;
  #o:
    & Required<
      Omit<
        ImageWorkerOptions,
        | "consumer"
        | "onFinished"
        | "onTerminal"
        | "idleSweepMs"
        | "onProvider"
        | "onPace"
        | "images"
        | "wakeups"
      >
    >
    & ImageWorkerOptions;
  /** Running deliveries, by entry and job id (two partitions' streams may use the same entry id). */
  #inflight = new Map<string, InFlight>();
  /** Deliveries claimed beyond the free slots (claims of several partitions landed together), FIFO. */
  #waiting: InFlight[] = [];
  #stop = new AbortController();
  #claims: ClaimLoops;
  #lastSweep = 0;
  #lastPrune = Date.now();
  #loop: Promise<void> | null = null;
  #maintenance: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | null = null;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #runDeps: RunDeps;
  #unlisten: (() => void) | undefined;

  constructor(options: ImageWorkerOptions) {
    if (options.concurrency < 1) throw new RangeError("Cannot create worker: concurrency < 1");
    this.consumer = options.consumer ?? `w-${crypto.randomUUID()}`;
    this.#o = {
      blockMs: 2_000,
      backoffBaseMs: 1_000,
      backoffMaxMs: 60_000,
      idlePollMaxMs: 8_000,
      ...options,
    };
    if (!(this.#o.backoffBaseMs > 0 && Number.isFinite(this.#o.backoffMaxMs))) {
      throw new RangeError("Cannot create worker: the backoff must be finite and > 0");
    }
    // Idle sweeps over REST: at most every 15 s, but never slower than one lease, so takeovers stay prompt.
    this.#o.idleSweepMs = options.idleSweepMs ?? Math.min(15_000, options.leaseMs);
    this.#runDeps = {
      ...this.#o,
      stopping: this.#stop.signal,
      schedulePromotion: (delayMs) => this.#schedulePromotion(delayMs),
      held: { until: 0 },
    };
    this.#claims = new ClaimLoops({
      ...this.#o,
      consumer: this.consumer,
      stop: this.#stop.signal,
      free: () => this.#free(),
      admit: (delivery) => this.#admit(delivery),
    });
  }

  /** Slots for new deliveries: concurrency minus running and waiting ones. */
  #free(): number {
    return this.#o.concurrency - this.#inflight.size - this.#waiting.length;
  }

  /** Aborts the provider call of a job running here, because its job was canceled. */
  abortJob(jobId: string): void {
    for (const flight of this.#inflight.values()) {
      if (flight.delivery.jobId === jobId) flight.controller.abort("canceled");
    }
  }

  /** Ends an idle poll pause at once (new work was just submitted in this process). */
  nudge(): void {
    this.#claims.idle.wake();
  }

  /** Number of jobs running here now. */
  get active(): number {
    return this.#inflight.size;
  }

  /** Starts the claim loop and the lease timer. */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#claims.run();
    this.#unlisten = this.#o.wakeups?.listen((kind) => {
      if (kind === "j") this.#claims.idle.wake();
      else if (kind === "c" && this.active > 0) void this.maintain();
      else if (kind === "s") void this.maintain({ sweep: true });
    });
    const every = Math.max(100, Math.floor(this.#o.leaseMs / 3));
    this.#maintenance = setInterval(() => void this.maintain(), every);
  }

  /** Runs a claimed delivery now, or once a slot frees when all are taken. */
  #admit(delivery: Delivery): void {
    const flight: InFlight = { delivery, controller: new AbortController(), phase: "intake" };
    if (this.#inflight.size < this.#o.concurrency) this.#spawn(flight);
    else this.#waiting.push(flight);
  }

  #spawn(flight: InFlight): void {
    const { delivery } = flight;
    const key = `${delivery.entryId} ${delivery.jobId}`;
    this.#inflight.set(key, flight);
    this.#handle(flight)
      .catch((error) =>
        this.#o.log.error("Cannot process job {id}: {error}", {
          id: delivery.jobId,
          error: String(error),
        })
      )
      .finally(() => {
        this.#inflight.delete(key);
        this.#slotFreed();
      });
  }

  /** Hands a freed slot to the oldest waiting delivery, else to the claim loops. */
  #slotFreed(): void {
    while (this.#waiting.length > 0 && this.#inflight.size < this.#o.concurrency) {
      const next = this.#waiting.shift()!;
      // A waiting delivery whose lease was lost meanwhile is left to its new holder.
      if (!next.controller.signal.aborted && !this.#stop.signal.aborted) this.#spawn(next);
    }
    this.#claims.slotFreed();
  }

  /**
   * Renews leases, aborts canceled and lost jobs, takes over stalled ones and promotes due retries:
   * each step on its own, so that one that fails (its partition's master is down) skips no other.
   */
  async maintain({ sweep = false }: { sweep?: boolean } = {}): Promise<void> {
    const { broker, log } = this.#o;
    const flights = [...this.#inflight.values(), ...this.#waiting];
    this.#o.onPace?.(broker.pace);
    await this.#step("renew leases", async () => {
      const statuses = await broker.renew(this.consumer, flights.map((f) => f.delivery));
      statuses.forEach((status, i) => this.#check(flights[i], status));
    });
    // Over REST every command is billed: an idle worker sweeps less often than it renews.
    const idle = !broker.blocking && flights.length === 0;
    // With wake-ups live, the safety poll finds what an idle sweep would (and asks for one).
    if (idle && !sweep && this.#o.wakeups?.live) return;
    if (idle && !sweep && Date.now() - this.#lastSweep < (this.#o.idleSweepMs ?? 0)) return;
    this.#lastSweep = Date.now();
    await this.#step("promote due retries", () => broker.promoteDue());
    const free = this.#free();
    if (free > 0 && !this.#stop.signal.aborted) {
      await this.#step("take over stalled jobs", async () => {
        const stalled = await broker.reclaim(this.consumer, this.#o.leaseMs, free);
        for (const delivery of stalled) this.#admit(delivery);
      });
    }
    const pruneIdleMs = Math.max(10 * this.#o.leaseMs, PRUNE_IDLE_MIN_MS);
    if (Date.now() - this.#lastPrune >= 10 * this.#o.leaseMs) {
      this.#lastPrune = Date.now();
      await this.#step("prune idle consumers", async () => {
        const removed = await broker.pruneConsumers(pruneIdleMs);
        if (removed > 0) log.info("Removed {removed} idle consumers", { removed });
      });
    }
  }

  /** Runs one maintenance step; a failure is logged and skips nothing else. */
  async #step(what: string, step: () => Promise<unknown>): Promise<void> {
    try {
      await step();
    } catch (error) {
      this.#o.log.warn("Cannot {what}: {error}", { what, error: String(error) });
    }
  }

  /** Acts on what a renewal found: another consumer holds the entry, or the job was canceled or is gone. */
  #check(flight: InFlight, status: LeaseStatus): void {
    const { controller, delivery, phase } = flight;
    // Its partition did not answer: nothing is known, and the job runs on.
    if (controller.signal.aborted || phase === "ending" || status === "unknown") return;
    // Before start() a seed's job may not exist yet: only "lost" counts then.
    if (status === "lost" || (status === null && phase === "running")) {
      this.#o.log.warn("Lost the lease of job {id} (entry {entry}): {why}; abandoning it here", {
        id: delivery.jobId,
        entry: delivery.entryId,
        why: status === "lost" ? "another consumer holds it" : "the job is gone",
      });
      controller.abort("lost");
    } else if (phase === "running" && status !== "running" && status !== "queued") {
      controller.abort("canceled");
    }
  }

  async #handle(flight: InFlight): Promise<void> {
    const onRefused = () => this.#o.onFinished?.("failed", null);
    const job = await intake(flight.delivery, { ...this.#o, onRefused }, flight.controller.signal);
    if (!job) return;
    flight.phase = "running";
    await runJob(flight, job, this.#runDeps);
  }

  /** Moves the retry back to the stream when it is due (the lease timer also does, as a fallback). */
  #schedulePromotion(delayMs: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#o.broker.promoteDue().catch(() => {});
    }, delayMs + 5);
    this.#timers.add(timer);
  }

  /** Stops claiming, lets in-flight jobs finish until the deadline, then aborts the rest; idempotent. */
  close({ drainMs = 10_000 }: { drainMs?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#unlisten?.();
      clearInterval(this.#maintenance);
      for (const timer of this.#timers) clearTimeout(timer);
      this.#claims.slotFreed();
      await this.#loop?.catch(() => {});
      // Waiting deliveries stay pending in their streams and are taken over once their leases expire.
      for (const flight of this.#waiting.splice(0)) flight.controller.abort("shutdown");
      const deadline = Date.now() + drainMs;
      while (this.#inflight.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      // Whatever is left stays pending in the stream and is taken over once its lease expires.
      for (const flight of this.#inflight.values()) flight.controller.abort("shutdown");
    })();
    return this.#closing;
  }
}
