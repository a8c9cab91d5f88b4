import assert from "node:assert/strict";
import { cancelWithWebhook, count, setup, succeed, verify } from "./dispatcher_fixture.ts";
import { startReceiver } from "./helpers.ts";

Deno.test("WebhookDispatcher delivers a 2xx once: the signed notification, image included", async () => {
  const receiver = startReceiver(() => new Response(null, { status: 204 }));
  const { memory, calls, metrics, dispatcher } = setup(receiver);
  try {
    dispatcher.start();
    const id = await succeed(memory, { webhook: receiver.url() });
    const call = await calls.next("the outbox call");
    assert.deepEqual([call.op, call.jobId, call.task?.type], ["done", id, "succeeded"]);
    const request = receiver.requests.all[0];
    const events = await memory.events(id);
    const succeeded = events.find((e) => e.notification.type === "succeeded")!;
    assert.deepEqual(verify(request), succeeded.notification);
    assert.equal(request.headers.get("webhook-id"), `msg_${id}_succeeded_${succeeded.eventId}`);
    assert.match(JSON.parse(request.body).data.image, /^data:image\/png;base64,iVBOR/);
    await dispatcher.close(); // the counters move once the delivery is over
    assert.equal(count(metrics, "delivered"), 1);
    assert.equal(receiver.requests.all.length, 1); // queued and started were not asked for
    assert.deepEqual(await memory.webhooks.take(Date.now() + 3_600_000, 10, 1), []);
  } finally {
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher retries a 500 with the same webhook-id, then ends on 2xx", async () => {
  const receiver = startReceiver((n) => new Response("", { status: n === 0 ? 500 : 200 }));
  const { memory, calls, metrics, dispatcher } = setup(receiver);
  try {
    dispatcher.start();
    await cancelWithWebhook(memory, "j-retry", receiver.url());
    const first = await calls.next("the retry");
    assert.equal(first.op, "retry");
    assert.equal(first.task?.attempt, 0);
    assert.equal((await calls.next("the done")).op, "done");
    const [a, b] = receiver.requests.all;
    assert.equal(a.headers.get("webhook-id"), b.headers.get("webhook-id"));
    assert.equal(a.body, b.body);
    verify(a);
    assert.deepEqual(verify(b), JSON.parse(b.body));
    assert.equal(JSON.parse(b.body).type, "canceled");
    await dispatcher.close();
    assert.deepEqual([count(metrics, "retried"), count(metrics, "delivered")], [1, 1]);
  } finally {
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher stops every delivery of a job whose receiver answers 410", async () => {
  const receiver = startReceiver(() => new Response("gone", { status: 410 }));
  const { memory, calls, metrics, dispatcher } = setup(receiver, { concurrency: 1 });
  try {
    const events = ["queued", "started", "succeeded"] as const;
    const id = await succeed(memory, { webhook: receiver.url(), webhookEvents: [...events] });
    dispatcher.start();
    const call = await calls.next("the stop");
    assert.deepEqual([call.op, call.jobId], ["stop", id]);
    await dispatcher.close();
    assert.equal(receiver.requests.all.length, 1);
    assert.equal(count(metrics, "gone"), 1);
    assert.deepEqual(await memory.webhooks.take(Date.now() + 3_600_000, 10, 1), []);
  } finally {
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher does not follow a redirect: it is a failed attempt", async () => {
  const elsewhere = startReceiver();
  const receiver = startReceiver(() => Response.redirect(elsewhere.url(), 307));
  const { memory, calls, dispatcher } = setup(receiver, {
    allowedHosts: [`127.0.0.1:${receiver.port}`, `127.0.0.1:${elsewhere.port}`],
  });
  try {
    dispatcher.start();
    await cancelWithWebhook(memory, "j-redirect", receiver.url());
    assert.equal((await calls.next("the retry")).op, "retry");
    await dispatcher.close();
    assert.equal(elsewhere.requests.all.length, 0);
  } finally {
    await dispatcher.close();
    await Promise.all([receiver.close(), elsewhere.close()]);
  }
});

Deno.test("WebhookDispatcher gives a silent receiver timeoutMs, then retries", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<Response>();
  const receiver = startReceiver(() => released);
  const { memory, calls, metrics, dispatcher } = setup(receiver, { timeoutMs: 200 });
  try {
    dispatcher.start();
    await cancelWithWebhook(memory, "j-slow", receiver.url());
    await receiver.requests.next("the request");
    const call = await calls.next("the retry");
    assert.equal(call.op, "retry");
    await dispatcher.close();
    assert.equal(count(metrics, "retried"), 1);
  } finally {
    release(new Response("late"));
    await dispatcher.close();
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher refuses at delivery a target that is or resolves to a private address", async (t) => {
  const receiver = startReceiver();
  try {
    for (
      const [name, webhook] of [
        ["a name resolving to 127.0.0.1", `http://hooks.test:${receiver.port}/hook`],
        ["an unlisted literal loopback address", receiver.url()],
      ]
    ) {
      await t.step(name, async () => {
        const { memory, calls, metrics, dispatcher } = setup(receiver, {
          allowedHosts: [],
          resolveDns: (_name, type) => Promise.resolve(type === "A" ? ["127.0.0.1"] : []),
        });
        try {
          dispatcher.start();
          await cancelWithWebhook(memory, "j-private", webhook);
          assert.equal((await calls.next("the done")).op, "done");
          await dispatcher.close();
          assert.equal(count(metrics, "refused"), 1);
        } finally {
          await dispatcher.close();
        }
      });
    }
    assert.equal(receiver.requests.all.length, 0);
  } finally {
    await receiver.close();
  }
});

Deno.test("WebhookDispatcher gives up once the schedule says so", async () => {
  const receiver = startReceiver(() => new Response("", { status: 503 }));
  const { memory, calls, metrics, dispatcher } = setup(receiver, {
    backoff: { baseMs: 10, maxMs: 10, giveUpAfterMs: 0, minAttempts: 2 },
  });
  try {
    dispatcher.start();
    await cancelWithWebhook(memory, "j-give-up", receiver.url());
    assert.equal((await calls.next("the retry")).op, "retry");
    assert.equal((await calls.next("the done")).op, "done");
    await dispatcher.close();
    assert.equal(receiver.requests.all.length, 2);
    assert.deepEqual([count(metrics, "retried"), count(metrics, "gave_up")], [1, 1]);
  } finally {
    await dispatcher.close();
    await receiver.close();
  }
});
