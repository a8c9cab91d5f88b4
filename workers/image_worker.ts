/** The image worker: claims jobs, keeps their leases, calls the provider, and finishes each job once. */
import type { Logger } from "@logtape/logtape";
import { RetryableError } from "../lib/errors.ts";
import type { ImageProvider } from "../lib/grok.ts";
import { PROCESSING_ERROR } from "../lib/notifications.ts";
import type { Broker, Delivery, JobRecord } from "../lib/queue/types.ts";
import { adoptSeed } from "./seed.ts";
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

interface InFlight {
  delivery: Delivery;
  controller: AbortController;
}

/** Computes a retry delay with exponential backoff, full jitter, and the provider's Retry-After as a floor. */
export function retryDelay(
  attempt: number,
  { baseMs, maxMs, retryAfterMs, random = Math.random }: {
    baseMs: number;
    maxMs: number;
    retryAfterMs?: number;
    random?: () => number;
  },
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(retryAfterMs ?? 0, Math.floor(random() * ceiling));
}

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
    const controller = new AbortController();
    this.#inflight.set(delivery.entryId, { delivery, controller });
    this.#handle(delivery, controller.signal)
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

  /** Renews leases, aborts canceled jobs, takes over stalled ones and promotes due retries. */
  async maintain(): Promise<void> {
    const { broker, log } = this.#o;
    try {
      const flights = [...this.#inflight.values()];
      const statuses = await broker.renew(this.consumer, flights.map((f) => f.delivery));
      statuses.forEach((status, i) => {
        if (status !== "running" && status !== "queued") flights[i].controller.abort("canceled");
      });
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
    } catch (error) {
      log.warn("Cannot maintain leases: {error}", { error: String(error) });
    }
  }

  async #handle(delivery: Delivery, signal: AbortSignal): Promise<void> {
    const { broker, log } = this.#o;
    if (!delivery.jobId) {
      log.warn("Dropping malformed stream entry {entry}", { entry: delivery.entryId });
      return await broker.ack(delivery);
    }
    if (delivery.deliveries > this.#o.maxAttempts + 2) {
      const reason = `Delivered ${delivery.deliveries} times without finishing`;
      return await broker.deadLetter(delivery, reason);
    }
    if (delivery.seed) {
      const verdict = await adoptSeed(delivery, this.#o);
      if (verdict === "refused") this.#o.onFinished?.("failed", null);
      if (verdict !== "run") return;
    }
    const job = await broker.start(delivery);
    if (!job) return await broker.ack(delivery);
    await this.#generate(delivery, job, signal);
  }

  /**
   * Retries a broker write until it lands (Redis may be restarting), so a finished job's outcome is kept
   * rather than recomputed; gives up only at shutdown, leaving the entry pending for a takeover.
   */
  async #persist<T>(what: string, write: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await write();
      } catch (error) {
        if (this.#stop.signal.aborted && attempt > 3) throw error;
        const delay = Math.min(100 * 2 ** attempt, 2_000);
        this.#o.log.warn("Cannot {what} yet, retrying in {delay} ms: {error}", {
          what,
          delay,
          error: String(error),
        });
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async #generate(delivery: Delivery, job: JobRecord, signal: AbortSignal): Promise<void> {
    const { broker, provider, log } = this.#o;
    try {
      const image = await provider.generate(
        { prompt: job.prompt, model: job.model, aspectRatio: job.aspectRatio },
        { signal },
      );
      const done = await this.#persist("store the result", () =>
        broker.finish(delivery, {
          type: "succeeded",
          image: image.base64,
          mimeType: image.mimeType,
          revisedPrompt: image.revisedPrompt,
        }));
      this.#o.onFinished?.(done ? "succeeded" : "superseded", job);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (signal.aborted && signal.reason === "shutdown") return; // left pending for a takeover
      if (signal.aborted) {
        // Canceled while running: the cancel wrote the terminal event; this only acknowledges.
        await broker.finish(delivery, { type: "failed", error: PROCESSING_ERROR, reason });
        return;
      }
      if (error instanceof RetryableError && job.attempts < this.#o.maxAttempts) {
        const delay = retryDelay(job.attempts, {
          baseMs: this.#o.backoffBaseMs,
          maxMs: this.#o.backoffMaxMs,
          retryAfterMs: error.retryAfterMs,
        });
        log.info("Retrying job {id} in {delay} ms: {reason}", { id: job.id, delay, reason });
        await this.#persist("schedule a retry", () => broker.retryLater(delivery, delay, reason));
        this.#schedulePromotion(delay);
        return;
      }
      log.warn("Job {id} failed: {reason}", { id: job.id, reason });
      const done = await this.#persist(
        "store the failure",
        () => broker.finish(delivery, { type: "failed", error: PROCESSING_ERROR, reason }),
      );
      this.#o.onFinished?.(done ? "failed" : "superseded", job);
    }
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
