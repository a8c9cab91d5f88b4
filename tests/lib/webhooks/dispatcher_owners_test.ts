import assert from "node:assert/strict";
import type { MemoryBroker } from "../../../lib/queue/memory.ts";
import type { Metrics } from "../../../lib/metrics.ts";
import { until } from "../../support/app.ts";
import { setup } from "./dispatcher_fixture.ts";
import { type Receiver, startReceiver } from "./helpers.ts";

/** Submits `count` jobs of `owner` with a webhook to `url` and cancels them: one delivery each. */
async function cancelMany(memory: MemoryBroker, owner: string, url: string, count: number) {
  for (let i = 0; i < count; i++) {
    const id = `${owner}-${i}`;
    await memory.submit({ id, owner, prompt: "p", webhook: url });
    await memory.cancel(id);
  }
}

/** The webhook_deliveries_dropped_total count of one reason. */
function dropped(metrics: Metrics, reason: string): number {
  const values = (metrics.webhookDropped as unknown as {
    hashMap: Record<string, { value: number; labels: { reason: string } }>;
  }).hashMap;
  return Object.values(values).find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** How many deliveries the outbox holds, due or not (it hides them all for good: call it last). */
async function pendingForGood(memory: MemoryBroker): Promise<number> {
  return (await memory.webhooks.take(Number.MAX_SAFE_INTEGER, 1_000, 0)).length;
}

/** A receiver that never answers until released (its connections stay open). */
function hangingReceiver(): { receiver: Receiver; release: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  const receiver = startReceiver(async () => {
    await promise;
    return new Response("late");
  });
  return { receiver, release: () => resolve() };
}

Deno.test("WebhookDispatcher delivers another owner's webhooks while one owner's target hangs", async () => {
  const { receiver: hang, release } = hangingReceiver();
  const ok = startReceiver();
  // The hanging owner's 40 deliveries are older than the other's 10: they come first in the outbox.
  const { memory, dispatcher, metrics } = setup(hang, {
    allowedHosts: [`127.0.0.1:${hang.port}`, `127.0.0.1:${ok.port}`],
    concurrency: 8,
    perOwner: 2,
    maxWaitingPerOwner: 8,
    timeoutMs: 120_000,
  });
  try {
    await cancelMany(memory, "mallory", hang.url(), 40);
    await cancelMany(memory, "alice", ok.url(), 10);
    dispatcher.start();
    for (let i = 0; i < 10; i++) await ok.requests.next(`alice's delivery ${i}`);
    // All of alice's arrived while mallory's target still holds its connections, unanswered: it
    // got no more than mallory's share of the slots.
    assert.equal(hang.requests.all.length, 2);
    assert.equal(ok.requests.all.length, 10);
    // mallory's other deliveries were taken and wait for its slots, at most 8 (alice's 10 fit in her
    // 2 slots and 8 waiting: none of hers is dropped); mallory's older ones were dropped, counted,
    // and are gone from the outbox.
    await until(() => dropped(metrics, "owner_backlog") === 30, "30 dropped deliveries");
    assert.equal(dispatcher.waiting, 8);
    await until(() => dispatcher.active === 2, "alice's deliveries recorded");
    assert.equal(await pendingForGood(memory), 2 + 8);
    const text = await metrics.registry.metrics();
    assert.match(text, /webhook_deliveries_dropped_total\{reason="owner_backlog"\} 30/);
  } finally {
    release();
    await dispatcher.close();
    await hang.close();
    await ok.close();
  }
});

Deno.test("WebhookDispatcher with its defaults: 120 deliveries to a hanging target hold 8 connections", async () => {
  const { receiver: hang, release } = hangingReceiver();
  const ok = startReceiver();
  const { memory, dispatcher, metrics } = setup(hang, {
    allowedHosts: [`127.0.0.1:${hang.port}`, `127.0.0.1:${ok.port}`],
    timeoutMs: 120_000,
  });
  try {
    await cancelMany(memory, "mallory", hang.url(), 120);
    await cancelMany(memory, "alice", ok.url(), 10);
    dispatcher.start();
    for (let i = 0; i < 10; i++) await ok.requests.next(`alice's delivery ${i}`);
    assert.equal(hang.requests.all.length, 8);
    await until(() => dispatcher.waiting === 112, "mallory's other 112 waiting");
    assert.equal(dropped(metrics, "owner_backlog"), 0);
  } finally {
    release();
    await dispatcher.close();
    await hang.close();
    await ok.close();
  }
});

Deno.test("WebhookDispatcher runs an owner's waiting deliveries as its slots free up", async () => {
  let answered = 0;
  const { promise: gate, resolve: open } = Promise.withResolvers<void>();
  const slow = startReceiver(async () => {
    await gate;
    answered++;
    return new Response("ok");
  });
  const { memory, dispatcher } = setup(slow, { concurrency: 8, perOwner: 2 });
  try {
    await cancelMany(memory, "bob", slow.url(), 6);
    dispatcher.start();
    await slow.requests.next("the first");
    await slow.requests.next("the second");
    await until(() => dispatcher.waiting === 4, "4 waiting");
    assert.equal(slow.requests.all.length, 2);
    open();
    for (let i = 2; i < 6; i++) await slow.requests.next(`delivery ${i}`);
    await until(() => answered === 6 && dispatcher.active === 0, "all 6 answered");
    assert.equal(await pendingForGood(memory), 0);
    assert.equal(slow.requests.all.length, 6);
  } finally {
    open();
    await dispatcher.close();
    await slow.close();
  }
});
