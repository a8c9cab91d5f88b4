/**
 * Event ids on a Redis that loses writes: a redis-server killed after its last snapshot comes back
 * without what followed, and a job id used again after its job expired. Neither may hand out an event
 * id again for another event (lib/queue/scripts.ts).
 */
import assert from "node:assert/strict";
import { webhookId } from "../../../lib/webhooks/signing.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import type { Broker, Delivery } from "../../../lib/queue/types.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { redisCommand, startRedis } from "../../support/redis_server.ts";
import { SUCCESS } from "./broker_contract_helpers.ts";

/** Retries a step while the broker reconnects to a restarted server. */
async function settled<T>(step: () => Promise<T>): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await step();
    } catch (error) {
      if (i >= 200) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

async function claimOne(broker: Broker, jobId: string): Promise<Delivery> {
  for (let i = 0; i < 50; i++) {
    await broker.promoteDue(Date.now() + 60_000);
    const [delivery] = await broker.claim("w1", 1, { blockMs: 100 });
    if (delivery) {
      assert.equal(delivery.jobId, jobId);
      return delivery;
    }
  }
  throw new Error(`Cannot claim ${jobId}`);
}

Deno.test({
  name: "a Redis that comes back without its last writes never hands out an event id again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startRedis({ appendonly: false });
    const broker = createRedisBroker(createTcpClient({ url: server.url }), { prefix: "loss:" });
    try {
      await broker.init();
      const webhook = "https://hooks.example/in";
      const webhookEvents = ["queued", "started", "succeeded"] as const;
      await broker.submit({
        id: "j",
        owner: "ann",
        prompt: "a fox",
        webhook,
        webhookEvents: [...webhookEvents],
      });
      const first = await claimOne(broker, "j");
      await broker.start(first);
      // The last snapshot: the job has run once. What follows is lost with the process.
      assert.equal(await redisCommand(server.port, ["SAVE"]), "OK");
      assert.equal(await broker.retryLater(first, 0, "provider busy"), true);
      const second = await claimOne(broker, "j");
      await broker.start(second);
      const seen = await broker.events("j");
      assert.deepEqual(seen.map((e) => e.notification.type), ["queued", "started", "started"]);
      const sent = (await broker.webhooks.take(Date.now() + 1_000, 10, 60_000)).map(webhookId);
      assert.equal(sent.length, 3);

      await server.kill();
      await server.restart();
      // Back as of the snapshot: the first delivery holds the job again, and ends it.
      assert.deepEqual(
        (await settled(() => broker.events("j"))).map((e) => e.notification.type),
        ["queued", "started"],
      );
      assert.equal(await settled(() => broker.finish(first, SUCCESS)), true);
      const now = await broker.events("j");
      const ended = now.at(-1)!;
      assert.equal(ended.notification.type, "succeeded");

      // An SSE client that saw the lost `started` resumes from it and still gets the end.
      const lost = seen.at(-1)!.eventId;
      const resumed = await broker.events("j", { after: lost });
      assert.deepEqual(resumed.map((e) => e.notification.type), ["succeeded"]);
      // No id names two events: the ids seen before the loss and those after are of the same events.
      const before = new Map(seen.map((e) => [e.eventId, e.notification.type]));
      for (const e of now) {
        const type = before.get(e.eventId);
        assert.ok(type === undefined || type === e.notification.type, `${e.eventId} named twice`);
      }
      const [delivery] = (await broker.webhooks.take(Date.now() + 1_000, 10, 60_000))
        .filter((task) => task.type === "succeeded");
      assert.ok(delivery, "the success's webhook is pending");
      assert.ok(!sent.includes(webhookId(delivery)), "a webhook-id names two deliveries");
    } finally {
      await broker.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "a job id used again after its job expired gets webhook-ids of its own",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startRedis();
    const broker = createRedisBroker(createTcpClient({ url: server.url }), {
      prefix: "again:",
      ttlSec: 1,
    });
    try {
      await broker.init();
      const job = {
        id: "same",
        owner: "ann",
        prompt: "a fox",
        webhook: "https://hooks.example/in",
      };
      const ids: string[] = [];
      for (let round = 0; round < 2; round++) {
        await broker.submit({ ...job, webhookEvents: ["queued", "canceled"] });
        assert.equal(await broker.cancel(job.id), "canceled");
        const tasks = await broker.webhooks.take(Date.now() + 1_000, 10, 60_000);
        assert.deepEqual(tasks.map((t) => t.type).sort(), ["canceled", "queued"]);
        ids.push(...tasks.map(webhookId));
        for (const task of tasks) await broker.webhooks.done(task);
        // The job expires (a second after its end): its id is free again.
        for (let i = 0; i < 200 && await broker.get(job.id) !== null; i++) {
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        assert.equal(await broker.get(job.id), null);
      }
      assert.equal(new Set(ids).size, 4, `webhook-ids repeat: ${ids}`);
    } finally {
      await broker.close();
      await server.stop();
    }
  },
});
