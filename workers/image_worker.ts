/** The image worker: claims jobs, keeps their leases, calls the provider, and finishes each job once. */
import type { Logger } from "@logtape/logtape";
import { isTransient, RetryableError } from "../lib/errors.ts";
import type { ImageProvider } from "../lib/provider/grok.ts";
import { PROCESSING_ERROR } from "../lib/live/notifications.ts";
import type { Broker, Delivery, JobRecord, LeaseStatus, Outcome } from "../lib/queue/types.ts";
import { intake } from "./seed.ts";
import { persist, retryDelay } from "./retry.ts";
import { pause, Wakeable } from "../lib/pause.ts";

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
}

/**
 * One delivery being handled here: `intake` until start() hands it the job (a seed's job may not exist
 * yet), `running` while the provider is called, `ending` once its last write is under way (fenced by the
 * broker, so renewals no longer matter).
 */
interface InFlight {
  delivery: Delivery;
  controller: AbortController;
  phase: "intake" | "running" | "ending";
}

/** Consumers idle this long with nothing pending are removed, at least (a live one claims every few seconds). */
const PRUNE_IDLE_MIN_MS = 60_000;

/** Runs jobs from the broker with bounded concurrency until closed. */
export class ImageWorker {
  readonly consumer: string;
  #o:
    & Required<Omit<ImageWorkerOptions, "consumer" | "onFinished" | "idleSweepMs">>
    & ImageWorkerOptions;
  #inflight = new Map<string, InFlight>();
  #stop = new AbortController();
  #slotFreed: (() => void) | null = null;
  #idle = new Wakeable();
  #lastSweep = 0;
  #lastPrune = Date.now();
  #loop: Promise<void> | null = null;
  #maintenance: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | null = null;
  #timers = new Set<ReturnType<typeof setTimeout>>();

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
  }

  /** Aborts the provider call of a job running here, because its job was canceled. */
  abortJob(jobId: string): void {
    for (const flight of this.#inflight.values()) {
      if (flight.delivery.jobId === jobId) flight.controller.abort("canceled");
    }
  }

  /** Ends an idle poll pause at once (new work was just submitted in this process). */
  nudge(): void {
    this.#idle.wake();
  }

  /** Number of jobs running here now. */
  get active(): number {
    return this.#inflight.size;
  }

  /** Starts the claim loop and the lease timer. */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
    const every = Math.max(100, Math.floor(this.#o.leaseMs / 3));
    this.#maintenance = setInterval(() => void this.maintain(), every);
  }

  async #run(): Promise<void> {
    const { broker, log } = this.#o;
    let idleMs = 0;
    while (!this.#stop.signal.aborted) {
      const free = this.#o.concurrency - this.#inflight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.#slotFreed = resolve));
        continue;
      }
      try {
        const blockMs = this.#o.blockMs;
        const batch = await broker.claim(this.consumer, free, {
          blockMs,
          signal: this.#stop.signal,
        });
        for (const delivery of batch) this.#spawn(delivery);
        // Without server-side blocking, poll fast while there is work and slow down when idle.
        idleMs = batch.length > 0 ? 0 : Math.min(Math.max(100, idleMs * 2), this.#o.idlePollMaxMs);
        if (!broker.blocking && idleMs > 0) await this.#idle.sleep(idleMs, this.#stop.signal);
      } catch (error) {
        log.warn("Cannot claim jobs: {error}", { error: String(error) });
        await pause(1_000, this.#stop.signal);
      }
    }
  }

  #spawn(delivery: Delivery): void {
    const flight: InFlight = { delivery, controller: new AbortController(), phase: "intake" };
    this.#inflight.set(delivery.entryId, flight);
    this.#handle(flight)
      .catch((error) =>
        this.#o.log.error("Cannot process job {id}: {error}", {
          id: delivery.jobId,
          error: String(error),
        })
      )
      .finally(() => {
        this.#inflight.delete(delivery.entryId);
        this.#slotFreed?.();
        this.#slotFreed = null;
      });
  }

  /** Renews leases, aborts canceled and lost jobs, takes over stalled ones and promotes due retries. */
  async maintain(): Promise<void> {
    const { broker, log } = this.#o;
    try {
      const flights = [...this.#inflight.values()];
      const statuses = await broker.renew(this.consumer, flights.map((f) => f.delivery));
      statuses.forEach((status, i) => this.#check(flights[i], status));
      // Over REST every command is billed: an idle worker sweeps less often than it renews.
      const idle = !broker.blocking && flights.length === 0;
      if (idle && Date.now() - this.#lastSweep < (this.#o.idleSweepMs ?? 0)) return;
      this.#lastSweep = Date.now();
      await broker.promoteDue();
      const free = this.#o.concurrency - this.#inflight.size;
      if (free > 0 && !this.#stop.signal.aborted) {
        const stalled = await broker.reclaim(this.consumer, this.#o.leaseMs, free);
        for (const delivery of stalled) this.#spawn(delivery);
      }
      const pruneIdleMs = Math.max(10 * this.#o.leaseMs, PRUNE_IDLE_MIN_MS);
      if (Date.now() - this.#lastPrune >= 10 * this.#o.leaseMs) {
        this.#lastPrune = Date.now();
        const removed = await broker.pruneConsumers(pruneIdleMs);
        if (removed > 0) log.info("Removed {removed} idle consumers", { removed });
      }
    } catch (error) {
      log.warn("Cannot maintain leases: {error}", { error: String(error) });
    }
  }

  /** Acts on what a renewal found: another consumer holds the entry, or the job was canceled or is gone. */
  #check(flight: InFlight, status: LeaseStatus): void {
    const { controller, delivery, phase } = flight;
    if (controller.signal.aborted || phase === "ending") return;
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
    await this.#generate(flight, job);
  }

  async #generate(flight: InFlight, job: JobRecord): Promise<void> {
    const { provider } = this.#o;
    const signal = flight.controller.signal;
    let outcome: Outcome;
    try {
      signal.throwIfAborted();
      const image = await provider.generate(
        { prompt: job.prompt, model: job.model, aspectRatio: job.aspectRatio },
        { signal },
      );
      signal.throwIfAborted();
      outcome = {
        type: "succeeded",
        image: image.base64,
        mimeType: image.mimeType,
        revisedPrompt: image.revisedPrompt,
      };
    } catch (error) {
      return await this.#failed(flight, job, error);
    }
    await this.#store(flight, job, outcome);
  }

  /** Handles a provider call that threw: abandoned, canceled, retried later, or failed. */
  async #failed(flight: InFlight, job: JobRecord, error: unknown): Promise<void> {
    const { broker, log } = this.#o;
    const { delivery, controller: { signal } } = flight;
    const reason = error instanceof Error ? error.message : String(error);
    if (signal.aborted) {
      if (signal.reason === "shutdown") return; // left pending for a takeover
      if (signal.reason === "lost") {
        // Another consumer holds the entry now: it writes the outcome, this one writes nothing.
        log.info("Abandoned job {id}: its lease was taken over", { id: job.id });
        return this.#o.onFinished?.("superseded", job);
      }
      // Canceled while running: the cancel wrote the terminal event; this only acknowledges.
      flight.phase = "ending";
      return await this.#persist("acknowledge a canceled job", () => broker.ack(delivery));
    }
    if (error instanceof RetryableError && job.attempts < this.#o.maxAttempts) {
      const delay = retryDelay(job.attempts, {
        baseMs: this.#o.backoffBaseMs,
        maxMs: this.#o.backoffMaxMs,
        retryAfterMs: error.retryAfterMs,
      });
      log.info("Retrying job {id} in {delay} ms: {reason}", { id: job.id, delay, reason });
      flight.phase = "ending";
      try {
        await this.#persist("schedule a retry", () => broker.retryLater(delivery, delay, reason));
        this.#schedulePromotion(delay);
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
    await this.#store(flight, job, { type: "failed", error: PROCESSING_ERROR });
  }

  /**
   * Writes the terminal outcome. A permanent error storing a success fails the job without its image; a
   * permanent error storing a failure releases the slot (the lease expires and the dead-letter path ends
   * the job), so no slot stays busy for good.
   */
  async #store(flight: InFlight, job: JobRecord, outcome: Outcome): Promise<void> {
    const { broker, log } = this.#o;
    flight.phase = "ending";
    try {
      const done = await this.#persist(
        `store the ${outcome.type} outcome`,
        () => broker.finish(flight.delivery, outcome),
      );
      if (!done) log.info("Job {id} was ended elsewhere; nothing stored", { id: job.id });
      this.#o.onFinished?.(done ? outcome.type : "superseded", job);
    } catch (error) {
      if (isTransient(error)) throw error; // given up at shutdown: left pending for a takeover
      if (outcome.type === "succeeded") {
        log.error("Cannot store the image of job {id}, failing it without: {error}", {
          id: job.id,
          error: String(error),
        });
        return await this.#store(flight, job, { type: "failed", error: PROCESSING_ERROR });
      }
      log.error("Cannot store the failure of job {id}, releasing it to its lease: {error}", {
        id: job.id,
        error: String(error),
      });
      this.#o.onFinished?.("abandoned", job);
    }
  }

  #persist<T>(what: string, write: () => Promise<T>): Promise<T> {
    return persist(write, { what, log: this.#o.log, stopping: this.#stop.signal });
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
      clearInterval(this.#maintenance);
      for (const timer of this.#timers) clearTimeout(timer);
      this.#slotFreed?.();
      await this.#loop?.catch(() => {});
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
