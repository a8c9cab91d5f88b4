/**
 * The webhook dispatcher: takes due deliveries from the broker's outbox (kept in Redis, so they
 * survive restarts), sends each signed and checked, with bounded concurrency in all and per owner
 * (see owner_lanes.ts: a hanging target holds only its own owner's slots), until closed.
 */
import { onOutboxWakeup, type OutboxWakeups, PUSHED_IDLE_MS } from "../live/wakeups.ts";
import type { Logger } from "@logtape/logtape";
import type { Metrics } from "../metrics.ts";
import { pause, Wakeable } from "../pause.ts";
import type { Broker, JobRecord, WebhookTask } from "../queue/types.ts";
import type { WebhookBackoffOptions } from "./backoff.ts";
import { deliverTask, type DeliveryDeps, type DeliveryOutcome } from "./delivery.ts";
import { OwnerLanes, type WaitingTask } from "./owner_lanes.ts";
import { WebhookSigner } from "./signing.ts";
import { type SendWebhook, sendWebhook } from "./transport.ts";

/** Dependencies and settings of a dispatcher. */
export interface WebhookDispatcherOptions {
  broker: Pick<Broker, "webhooks" | "get" | "events">;
  /** WEBHOOK_SECRET, `whsec_<base64>`. */
  secret: string;
  /** WEBHOOK_HOSTS: `host[:port]` entries that may be loopback or private. */
  allowedHosts: readonly string[];
  log: Logger;
  metrics?: Pick<Metrics, "webhookDeliveries" | "webhookDropped">;
  /** The transport (default: HTTP/1.1 to the checked address); tests may wrap it. */
  send?: SendWebhook;
  /** DNS lookups (default Deno.resolveDns). */
  resolveDns?: DeliveryDeps["resolveDns"];
  clock?: () => number;
  /** Deadline of one attempt: lookup, connection, request and the answer's headers. */
  timeoutMs?: number;
  /** Most bytes of an answer read (its status line and headers must fit). */
  maxResponseBytes?: number;
  /** Deliveries in flight at once. */
  concurrency?: number;
  /** Deliveries of one owner in flight at once (its slow target holds no more slots than this). */
  perOwner?: number;
  /** Taken deliveries of one owner waiting for its slots; beyond it the oldest is dropped and counted. */
  maxWaitingPerOwner?: number;
  /** How long a taken task stays hidden from other processes (longer than one attempt). */
  leaseMs?: number;
  /** Longest wait between two looks at the outbox when nothing is due and nothing nudges. */
  idleMs?: number;
  /**
   * Push wake-ups (Upstash): while live, a script that adds a delivery wakes the loop ("w"), so an
   * idle dispatcher looks at the outbox only at the retries it scheduled and every PUSHED_IDLE_MS.
   */
  wakeups?: OutboxWakeups;
  /** Puts a current read ticket on a success's image links, at each attempt. */
  tickets?: { current(owner: string, jobId: string): string };
  backoff?: WebhookBackoffOptions;
  /** Extra root certificates for https receivers (PEM). */
  caCerts?: string[];
}

const OUTCOMES: readonly DeliveryOutcome[] = ["delivered", "retried", "gone", "gave_up", "refused"];
/** Why a delivery is dropped unsent: its owner's backlog is over the bound, or its job is gone. */
const DROP_REASONS = ["owner_backlog", "expired"] as const;

function defaultResolveDns(
  name: string,
  type: "A" | "AAAA",
  signal: AbortSignal,
): Promise<string[]> {
  return Deno.resolveDns(name, type, { signal });
}

/** Sends due webhook deliveries until closed; never throws out of its loop. */
export class WebhookDispatcher {
  #deps: DeliveryDeps;
  #broker: WebhookDispatcherOptions["broker"];
  #log: Logger;
  #metrics?: Pick<Metrics, "webhookDeliveries" | "webhookDropped">;
  #concurrency: number;
  #lanes: OwnerLanes;
  #leaseMs: number;
  #idleMs: number;
  #inflight = new Set<Promise<void>>();
  #stop = new AbortController();
  #wake = new Wakeable();
  #nudged = false;
  #waitingForSlot = false;
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #wakeups?: WebhookDispatcherOptions["wakeups"];
  #unlisten?: () => void;
  /** The earliest retry this process scheduled that is not yet due (Infinity: none). */
  #nextRetryAt = Infinity;

  constructor(options: WebhookDispatcherOptions) {
    const {
      timeoutMs = 10_000,
      maxResponseBytes = 64 * 1024,
      concurrency = 64,
      perOwner = 8,
      maxWaitingPerOwner = 1_000,
      idleMs = 1_000,
    } = options;
    if (!(timeoutMs > 0)) throw new RangeError("Cannot create the dispatcher: timeoutMs <= 0");
    if (!(maxResponseBytes >= 256)) {
      throw new RangeError("Cannot create the dispatcher: maxResponseBytes < 256");
    }
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError("Cannot create the dispatcher: concurrency < 1");
    }
    this.#broker = options.broker;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#concurrency = concurrency;
    this.#lanes = new OwnerLanes({ perOwner, maxWaiting: maxWaitingPerOwner });
    this.#idleMs = idleMs;
    this.#leaseMs = options.leaseMs ?? Math.max(30_000, timeoutMs * 3);
    this.#deps = {
      broker: options.broker,
      signer: new WebhookSigner(options.secret),
      allowedHosts: options.allowedHosts,
      send: options.send ?? sendWebhook,
      resolveDns: options.resolveDns ?? defaultResolveDns,
      clock: options.clock ?? Date.now,
      log: options.log,
      timeoutMs,
      maxResponseBytes,
      caCerts: options.caCerts,
      backoff: options.backoff,
      tickets: options.tickets,
      onRetry: (dueMs) => {
        // The loop may be in a long idle wait: wake it, so that it waits for this retry instead.
        this.#nextRetryAt = Math.min(this.#nextRetryAt, dueMs);
        if (this.#wakeups?.live) this.#wake.wake();
      },
    };
    this.#wakeups = options.wakeups;
    // Every outcome shows at 0 from the start, so that a rate over it is defined.
    for (const outcome of OUTCOMES) this.#metrics?.webhookDeliveries.inc({ outcome }, 0);
    for (const reason of DROP_REASONS) this.#metrics?.webhookDropped.inc({ reason }, 0);
  }

  /** Deliveries in flight now. */
  get active(): number {
    return this.#inflight.size;
  }

  /** Taken deliveries waiting for their owner's slot now. */
  get waiting(): number {
    return this.#lanes.waiting;
  }

  /** Starts the loop (once). */
  start(): void {
    if (this.#loop !== null || this.#closing !== null) return;
    // A delivery added anywhere, or the safety poll's sweep: look now.
    this.#unlisten = onOutboxWakeup(this.#wakeups, () => this.nudge());
    this.#loop = this.#run();
  }

  /** Looks at the outbox now rather than at the next poll (call it right after a new event). */
  nudge(): void {
    this.#nudged = true;
    this.#wake.wake();
  }

  /** Stops taking tasks and waits for the deliveries in flight (each ends within timeoutMs). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#unlisten?.();
      await this.#loop;
      await Promise.allSettled([...this.#inflight]);
    })();
    return this.#closing;
  }

  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    let failures = 0;
    while (!stop.aborted) {
      const free = this.#concurrency - this.#inflight.size;
      if (free <= 0) {
        this.#waitingForSlot = true;
        await this.#wake.sleep(this.#idleMs, stop);
        this.#waitingForSlot = false;
        continue;
      }
      this.#nudged = false;
      let tasks: WebhookTask[];
      try {
        const now = this.#deps.clock();
        if (now >= this.#nextRetryAt) this.#nextRetryAt = Infinity;
        tasks = await this.#broker.webhooks.take(now, free, this.#leaseMs);
        failures = 0;
      } catch (error) {
        failures++;
        this.#log.warn("Cannot read the webhook outbox (attempt {failures}): {error}", {
          failures,
          error: String(error),
        });
        await pause(Math.min(this.#idleMs * 2 ** Math.min(failures, 5), 30_000), stop);
        continue;
      }
      await this.#admit(tasks);
      if (tasks.length < free && !this.#nudged && !stop.aborted) {
        await this.#wake.sleep(this.#idleFor(), stop);
      }
    }
  }

  /** How long an idle loop waits: `idleMs`, or with push wake-ups live until its next retry is due. */
  #idleFor(): number {
    if (!this.#wakeups?.live) return this.#idleMs;
    const untilRetry = this.#nextRetryAt - this.#deps.clock();
    return Math.max(0, Math.min(PUSHED_IDLE_MS, untilRetry));
  }

  /** Starts each taken task whose owner has a slot; the others wait for one (bounded per owner). */
  async #admit(tasks: WebhookTask[]): Promise<void> {
    const now = this.#deps.clock();
    this.#lanes.prune(now);
    let jobs: (JobRecord | null)[];
    try {
      jobs = await Promise.all(tasks.map((task) => this.#broker.get(task.jobId)));
    } catch (error) {
      // They come back when their lease runs out.
      this.#log.warn("Cannot read the jobs of {count} webhook deliveries: {error}", {
        count: tasks.length,
        error: String(error),
      });
      return;
    }
    tasks.forEach((task, i) => {
      const job = jobs[i];
      if (job === null || this.#lanes.hasSlot(job.owner)) return this.#launch(task, job);
      const dropped = this.#lanes.wait({ task, job, until: now + this.#leaseMs });
      for (const item of dropped) this.#dropOldest(item);
    });
  }

  #dropOldest({ task, job }: WaitingTask): void {
    this.#metrics?.webhookDropped.inc({ reason: "owner_backlog" });
    this.#log.warn(
      "Cannot keep the webhook delivery of job {jobId}: its owner has too many waiting; dropping the oldest",
      { jobId: task.jobId, owner: job.owner, type: task.type },
    );
    this.#broker.webhooks.done(task).catch((error) =>
      this.#log.warn("Cannot drop the webhook delivery of job {jobId}: {error}", {
        jobId: task.jobId,
        error: String(error),
      })
    );
  }

  /** Starts a delivery; `job` was just read, unless `stale` (it waited: read again, a 410 may have come). */
  #launch(task: WebhookTask, job: JobRecord | null, stale = false): void {
    const owner = job?.owner;
    if (owner !== undefined) this.#lanes.begin(owner);
    const run = (async () => {
      try {
        const outcome = await deliverTask(task, this.#deps, stale ? undefined : job);
        if (outcome === "dropped") this.#metrics?.webhookDropped.inc({ reason: "expired" });
        else this.#metrics?.webhookDeliveries.inc({ outcome });
      } catch (error) {
        // A broker error: the task comes back when its lease runs out.
        this.#log.warn("Cannot record the webhook delivery of job {jobId}: {error}", {
          jobId: task.jobId,
          error: String(error),
        });
      }
    })();
    this.#inflight.add(run);
    void run.finally(() => {
      this.#inflight.delete(run);
      if (owner !== undefined) {
        this.#lanes.end(owner);
        // The owner's next waiting delivery takes the slot, while its lease outlasts an attempt.
        const margin = this.#deps.timeoutMs + 1_000;
        const next = this.#stop.signal.aborted
          ? undefined
          : this.#lanes.next(owner, this.#deps.clock(), margin);
        if (next !== undefined) return this.#launch(next.task, next.job, true);
      }
      if (this.#waitingForSlot) this.#wake.wake();
    });
  }
}
