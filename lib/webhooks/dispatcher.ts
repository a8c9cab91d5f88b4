/**
 * The webhook dispatcher: takes due deliveries from the broker's outbox (kept in Redis, so they
 * survive restarts), sends each signed and checked, with bounded concurrency, until closed.
 */
import type { Logger } from "@logtape/logtape";
import type { Metrics } from "../metrics.ts";
import { pause, Wakeable } from "../pause.ts";
import type { Broker, WebhookTask } from "../queue/types.ts";
import type { WebhookBackoffOptions } from "./backoff.ts";
import { deliverTask, type DeliveryDeps, type DeliveryOutcome } from "./delivery.ts";
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
  metrics?: Pick<Metrics, "webhookDeliveries">;
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
  /** How long a taken task stays hidden from other processes (longer than one attempt). */
  leaseMs?: number;
  /** Longest wait between two looks at the outbox when nothing is due and nothing nudges. */
  idleMs?: number;
  backoff?: WebhookBackoffOptions;
  /** Extra root certificates for https receivers (PEM). */
  caCerts?: string[];
}

const OUTCOMES: readonly DeliveryOutcome[] = ["delivered", "retried", "gone", "gave_up", "refused"];

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
  #metrics?: Pick<Metrics, "webhookDeliveries">;
  #concurrency: number;
  #leaseMs: number;
  #idleMs: number;
  #inflight = new Set<Promise<void>>();
  #stop = new AbortController();
  #wake = new Wakeable();
  #nudged = false;
  #waitingForSlot = false;
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: WebhookDispatcherOptions) {
    const {
      timeoutMs = 10_000,
      maxResponseBytes = 64 * 1024,
      concurrency = 16,
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
    };
    // Every outcome shows at 0 from the start, so that a rate over it is defined.
    for (const outcome of OUTCOMES) this.#metrics?.webhookDeliveries.inc({ outcome }, 0);
  }

  /** Deliveries in flight now. */
  get active(): number {
    return this.#inflight.size;
  }

  /** Starts the loop (once). */
  start(): void {
    if (this.#loop !== null || this.#closing !== null) return;
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
        tasks = await this.#broker.webhooks.take(this.#deps.clock(), free, this.#leaseMs);
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
      for (const task of tasks) this.#launch(task);
      if (tasks.length < free && !this.#nudged && !stop.aborted) {
        await this.#wake.sleep(this.#idleMs, stop);
      }
    }
  }

  #launch(task: WebhookTask): void {
    const run = (async () => {
      try {
        const outcome = await deliverTask(task, this.#deps);
        if (outcome !== "dropped") this.#metrics?.webhookDeliveries.inc({ outcome });
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
      if (this.#waitingForSlot) this.#wake.wake();
    });
  }
}
