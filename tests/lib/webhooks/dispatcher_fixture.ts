/** The dispatcher tests' fixture: a dispatcher over a fresh memory broker, and checks. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Webhook } from "standardwebhooks";
import { createMetrics, type Metrics } from "../../../lib/metrics.ts";
import { createMemoryBroker, type MemoryBroker } from "../../../lib/queue/memory.ts";
import type { NewJob } from "../../../lib/queue/types.ts";
import {
  WebhookDispatcher,
  type WebhookDispatcherOptions,
} from "../../../lib/webhooks/dispatcher.ts";
import { type Received, type Receiver, recordingBroker, SECRET } from "./helpers.ts";

const PNG = Uint8Array.fromBase64(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC",
);

/** A dispatcher over a fresh memory broker, posting to `receiver` (listed in allowedHosts). */
export function setup(receiver: Receiver, options: Partial<WebhookDispatcherOptions> = {}) {
  const memory = createMemoryBroker();
  const { broker, calls } = recordingBroker(memory);
  const metrics = createMetrics();
  const dispatcher = new WebhookDispatcher({
    broker,
    secret: SECRET,
    allowedHosts: [`127.0.0.1:${receiver.port}`],
    log: getLogger(["imagejobs", "test"]),
    metrics,
    backoff: { baseMs: 10, maxMs: 20 },
    idleMs: 50,
    ...options,
  });
  return { memory, calls, metrics, dispatcher };
}

/** Submits a job with a webhook and runs it to success; returns its id. */
export async function succeed(memory: MemoryBroker, extra: Partial<NewJob>): Promise<string> {
  const id = crypto.randomUUID();
  await memory.submit({ id, owner: "alice", prompt: "a red fox", ...extra });
  const [delivery] = await memory.claim("c1", 1, { blockMs: 0 });
  assert.equal(delivery.jobId, id);
  assert.ok(await memory.start(delivery));
  assert.ok(
    await memory.finish(delivery, { type: "succeeded", image: PNG, mimeType: "image/png" }),
  );
  return id;
}

/** Submits a job with a webhook and cancels it, so that its `canceled` event is to be delivered. */
export async function cancelWithWebhook(memory: MemoryBroker, id: string, webhook: string) {
  await memory.submit({ id, owner: "a", prompt: "p", webhook });
  await memory.cancel(id);
}

/** The webhook_deliveries_total count of one outcome. */
export function count(metrics: Metrics, outcome: string): number {
  const values = (metrics.webhookDeliveries as unknown as {
    hashMap: Record<string, { value: number; labels: { outcome: string } }>;
  }).hashMap;
  return Object.values(values).find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

/** The notification a request carries, once its Standard Webhooks signature checks out. */
export function verify(request: Received): unknown {
  return new Webhook(SECRET).verify(request.body, Object.fromEntries(request.headers));
}
