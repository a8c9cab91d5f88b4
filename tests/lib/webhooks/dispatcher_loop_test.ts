import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { createMetrics } from "../../../lib/metrics.ts";
import type { WebhookTask } from "../../../lib/queue/types.ts";
import { WebhookDispatcher } from "../../../lib/webhooks/dispatcher.ts";
import { cancelWithWebhook, count, setup } from "./dispatcher_fixture.ts";
import { SECRET, startReceiver } from "./helpers.ts";

Deno.test("WebhookDispatcher takes a task at once when nudged", async () => {
  const receiver = startReceiver();
  // A poll far longer than the test may take: only the nudge can start the delivery.
  const { memory, calls, dispatcher } = setup(receiver, { idleMs: 600_000 });
  try {
    dispatcher.start();
    await memory.webhooks.take(Date.now(), 1, 1); // yields until the loop has looked once
    await cancelWithWebhook(memory, "j-nudge", receiver.url());
    dispatcher.nudge();
    assert.equal((await calls.next("the done")).op, "done");
  } finally {
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher keeps at most `concurrency` deliveries in flight", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  const receiver = startReceiver(async () => {
    await released;
    return new Response("ok");
  });
  const { memory, calls, dispatcher } = setup(receiver, { concurrency: 4 });
  try {
    for (let i = 0; i < 10; i++) {
      await cancelWithWebhook(memory, `j-c${i}`, receiver.url());
    }
    dispatcher.start();
    for (let i = 0; i < 4; i++) await receiver.requests.next(`request ${i}`);
    assert.equal(dispatcher.active, 4);
    // The six others are still due in the outbox: nobody took them (a zero lease leaves them due).
    assert.equal((await memory.webhooks.take(Date.now(), 100, 0)).length, 6);
    release();
    for (let i = 0; i < 10; i++) assert.equal((await calls.next(`done ${i}`)).op, "done");
    assert.equal(receiver.requests.all.length, 10);
  } finally {
    release();
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher survives outbox errors and drops tasks of vanished jobs", async () => {
  const task: WebhookTask = { jobId: "gone", type: "failed", eventId: "2", attempt: 0, firstAt: 0 };
  let takes = 0;
  const { promise: doneTask, resolve: finished } = Promise.withResolvers<WebhookTask>();
  const broker = {
    get: () => Promise.resolve(null),
    events: () => Promise.resolve([]),
    webhooks: {
      take() {
        takes++;
        if (takes === 1) return Promise.reject(new Error("Redis is away"));
        return Promise.resolve(takes === 2 ? [task] : []);
      },
      done: (t: WebhookTask) => Promise.resolve(finished(t)),
      retry: () => Promise.reject(new Error("not expected")),
      stop: () => Promise.reject(new Error("not expected")),
    },
  };
  const metrics = createMetrics();
  const dispatcher = new WebhookDispatcher({
    broker,
    secret: SECRET,
    allowedHosts: [],
    log: getLogger(["imagejobs", "test"]),
    metrics,
    idleMs: 5,
  });
  try {
    dispatcher.start();
    assert.deepEqual(await doneTask, task);
    assert.ok(takes >= 2);
    for (const outcome of ["delivered", "retried", "gone", "gave_up", "refused"]) {
      assert.equal(count(metrics, outcome), 0, outcome);
    }
  } finally {
    const closing = dispatcher.close();
    assert.equal(dispatcher.close(), closing);
    await closing;
  }
});

Deno.test("WebhookDispatcher.close waits for the deliveries in flight", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  const receiver = startReceiver(async () => {
    await released;
    return new Response("ok");
  });
  const { memory, calls, dispatcher } = setup(receiver);
  try {
    dispatcher.start();
    await cancelWithWebhook(memory, "j-close", receiver.url());
    await receiver.requests.next("the request");
    const closing = dispatcher.close();
    release();
    await closing;
    assert.deepEqual(calls.all.map((c) => c.op), ["done"]);
    assert.equal(dispatcher.active, 0);
  } finally {
    release();
    await dispatcher.close();
    await receiver.close();
  }
});
