/** The in-memory broker of the embedded default: one process, nothing durable, no polling. */
// The Broker interface is asynchronous; this implementation answers synchronously.
// deno-lint-ignore-file require-await
import { BrokerUnavailableError } from "../errors.ts";
import { TERMINAL_STATUSES } from "../live/notifications.ts";
import { MemoryEndings } from "./memory_endings.ts";
import { OwnerLimits } from "./memory_limits.ts";
import { type MemoryBrokerOptions, MemoryReads } from "./memory_reads.ts";
import { secondsToDayEnd } from "../pace/usage.ts";
import { type DeadLetter, DeadLetters, DelayedRetries } from "./memory_stream.ts";
import type {
  BlockOptions,
  Broker,
  CancelResult,
  Delivery,
  JobRecord,
  LeaseStatus,
  NewJob,
  Outcome,
  SeedAdoption,
  SubmitLimits,
  SubmitResult,
  Turn,
  UsageDay,
} from "./types.ts";

/** A dead letter the in-memory broker recorded (kept in memory_stream.ts). */
export type { DeadLetter } from "./memory_stream.ts";
export type { MemoryBrokerOptions } from "./memory_reads.ts";

/** Creates the single-process broker used when no Redis is configured. */
export function createMemoryBroker(options: MemoryBrokerOptions = {}): MemoryBroker {
  return new MemoryBroker(options);
}

/** A broker kept in maps; blocking reads wait on promises that writes resolve. */
export class MemoryBroker extends MemoryReads implements Broker {
  readonly kind = "memory" as const;
  readonly blocking = true;
  readonly partitions = 1;
  readonly separateIntake = false;
  #delayed = new DelayedRetries(() => this.promoteDue());
  #dead = new DeadLetters();
  #limits = new OwnerLimits((id) => this.store.ended(id));
  #endings = new MemoryEndings(this.store, this.turns);

  async init(): Promise<void> {}

  /** One partition: the intake is the jobs stream itself. */
  async moveIntake(): Promise<number> {
    return 0;
  }

  async ping(): Promise<void> {
    if (this.store.closed) {
      throw new BrokerUnavailableError("Cannot reach the broker: it is closed");
    }
  }

  async submit(job: NewJob, limits: SubmitLimits = {}): Promise<SubmitResult> {
    if (this.store.sweep()) this.#limits.prune(this.store.now());
    const found = this.store.job(job.id);
    if (found) return { created: false, job: { ...found.record } };
    const { references: _, ...fields } = job;
    const attempted = (refused: NonNullable<SubmitResult["refused"]>): SubmitResult => ({
      created: false,
      refused,
      job: { ...fields, status: "queued", createdAt: "", updatedAt: "", attempts: 0 },
    });
    if (limits.ratePerMinute) {
      const retryAfterSec = this.#limits.rate(job.owner, limits.ratePerMinute, this.store.now());
      if (retryAfterSec > 0) return { ...attempted("rate_limited"), retryAfterSec };
    }
    if (limits.maxQueued && this.queue.size + this.turns.room.size >= limits.maxQueued) {
      return attempted("backlog");
    }
    if (limits.maxActivePerOwner && this.#limits.busy(job.owner, limits.maxActivePerOwner)) {
      return attempted("owner_busy");
    }
    const images = limits.images ?? job.n ?? 1;
    if (limits.maxImagesPerDay) {
      if (!this.turns.reserve(job.owner, images, limits.maxImagesPerDay)) {
        const retryAfterSec = secondsToDayEnd(this.store.now());
        return { ...attempted("quota_exceeded"), retryAfterSec };
      }
      this.#endings.reserved(job.id, images);
    }
    const record = this.store.create(job);
    this.turns.enqueue(job.id, job.owner);
    if (limits.maxActivePerOwner) this.#limits.add(job.owner, job.id);
    return { created: true, job: { ...record } };
  }

  async cancel(id: string): Promise<CancelResult> {
    const job = this.store.job(id);
    if (!job) return "missing";
    if (TERMINAL_STATUSES.has(job.record.status)) return "ended";
    this.#delayed.remove(id);
    this.#endings.cancel(job);
    return "canceled";
  }

  claim(consumer: string, count: number, options: BlockOptions): Promise<Delivery[]> {
    return this.store.block(options, () => {
      const given = this.turns.turn(count);
      // Jobs wait for the pace: look again when it has a turn (a write wakes the claim sooner).
      if (given.moved === 0 && given.waiting > 0) this.turns.wakeIn(given.waitMs);
      return this.queue.take(consumer, count, this.store.now());
    });
  }

  async reclaim(consumer: string, idleMs: number, count: number): Promise<Delivery[]> {
    return this.queue.reclaim(consumer, idleMs, count, this.store.now());
  }

  async renew(consumer: string, deliveries: Delivery[]): Promise<LeaseStatus[]> {
    return deliveries.map((delivery) => {
      if (!this.queue.renew(delivery.entryId, consumer, this.store.now())) return "lost";
      return this.store.job(delivery.jobId)?.record.status ?? null;
    });
  }

  async pruneConsumers(idleMs: number): Promise<number> {
    return this.queue.prune(idleMs, this.store.now());
  }

  async adoptSeed(delivery: Delivery, adoption: SeedAdoption): Promise<boolean> {
    if (this.store.job(delivery.jobId)) return false;
    this.store.create({
      id: delivery.jobId,
      owner: adoption.owner,
      prompt: adoption.prompt,
    });
    return true;
  }

  async start(delivery: Delivery): Promise<JobRecord | null> {
    if (this.#leaseLost(delivery)) return null;
    const job = this.store.job(delivery.jobId);
    const status = job?.record.status;
    if (!job || (status !== "queued" && status !== "running")) return null;
    if (status === "running" && job.entry && job.entry !== delivery.entryId) return null;
    job.entry = delivery.entryId;
    job.record.attempts += 1;
    if (status === "queued") this.store.change(job, "running", { type: "started", success: true });
    return { ...job.record };
  }

  async finish(delivery: Delivery, outcome: Outcome): Promise<boolean> {
    // The same write again (as a resend after a reconnect runs it twice in Redis): done.
    if (this.#endings.endedBy(delivery, outcome.type)) return true;
    if (this.#leaseLost(delivery)) return false;
    this.queue.remove(delivery.entryId);
    return this.#endings.finish(this.store.job(delivery.jobId), delivery, outcome);
  }

  /** The reason is the worker's to log; nothing a client sees keeps it. */
  async retryLater(
    delivery: Delivery,
    delayMs: number,
    _reason: string,
    { giveBack = false }: { giveBack?: boolean } = {},
  ): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.queue.remove(delivery.entryId);
    const job = this.store.job(delivery.jobId);
    if (job?.record.status !== "running") return false;
    Object.assign(job.record, { status: "queued", updatedAt: this.store.iso() });
    if (giveBack) {
      job.record.attempts = Math.max(0, job.record.attempts - 1);
      this.turns.room.park(job.record.id, job.record.owner, true);
    } else {
      this.#delayed.add(delivery.jobId, this.store.now(), delayMs, !this.store.closed);
    }
    return true;
  }

  async turn(_partition: number, want: number): Promise<Turn> {
    return this.turns.turn(want);
  }

  async throttle(retryAfterMs: number): Promise<void> {
    this.turns.throttle(retryAfterMs);
  }

  async park(delivery: Delivery): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.queue.remove(delivery.entryId);
    const job = this.store.job(delivery.jobId);
    if (job?.record.status !== "queued") return false;
    if (!this.turns.room.has(job.record.id)) this.turns.enqueue(job.record.id, job.record.owner);
    return true;
  }

  async usage(owner: string, day: string): Promise<UsageDay> {
    return this.turns.day(owner, day);
  }

  async promoteDue(now: number = this.store.now()): Promise<number> {
    let moved = 0;
    for (const jobId of this.#delayed.takeDue(now)) {
      const job = this.store.job(jobId);
      if (!job || this.store.ended(jobId)) continue;
      this.turns.room.park(jobId, job.record.owner, true);
      moved += 1;
    }
    return moved;
  }

  async deadLetter(delivery: Delivery, reason: string): Promise<boolean> {
    if (this.#leaseLost(delivery)) return false;
    this.queue.remove(delivery.entryId);
    const ended = this.#endings.deadLetter(this.store.job(delivery.jobId), delivery);
    const { jobId, entryId } = delivery;
    this.#dead.add({ jobId, entryId, reason: reason || "unknown", at: this.store.iso() });
    return ended;
  }

  async ack(delivery: Delivery): Promise<void> {
    if (this.#leaseLost(delivery)) return;
    this.queue.remove(delivery.entryId);
  }

  /** Adds an entry with the seed's fields, as another service adds one to the jobs stream. */
  addSeedEntry(seed: { id: string; token: string; prompt: string }): string {
    const entryId = this.store.nextId();
    this.queue.add({ entryId, jobId: seed.id, seed: { token: seed.token, prompt: seed.prompt } });
    return entryId;
  }

  /** The dead letters recorded so far, oldest first. */
  deadLetters(): DeadLetter[] {
    return this.#dead.list();
  }

  async close(): Promise<void> {
    this.#delayed.stop();
    this.turns.close();
    this.store.close();
  }

  /** Sizes of the per-owner maps (rate windows, active-job sets), which the sweep prunes. */
  get ownerMaps(): { rateWindows: number; activeSets: number } {
    return this.#limits.sizes;
  }

  /** True when the delivery names a consumer that no longer holds its entry (then nothing is written). */
  #leaseLost({ entryId, consumer }: Delivery): boolean {
    return entryId !== "" && consumer !== "" && !this.queue.holds(entryId, consumer);
  }
}
