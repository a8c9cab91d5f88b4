/** The broker contract: one test suite that every Broker implementation must pass. */
import assert from "node:assert/strict";
import { compareEventIds, dataUrl, isEventId } from "../../../lib/live/notifications.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import {
  assertNotification,
  claimJob,
  type ContractHooks,
  type ContractTest,
  errorOf,
  IMAGE,
  IMAGE_BYTES,
  newJob,
  pick,
  strayDelivery,
  SUCCESS,
  types,
} from "./broker_contract_helpers.ts";
import { imagesContract } from "./broker_contract_images.ts";
import { leasesContract } from "./broker_contract_leases.ts";
import { lifetimeContract } from "./broker_contract_lifetime.ts";
import { limitsContract } from "./broker_contract_limits.ts";
import { streamContract } from "./broker_contract_stream.ts";
import { v11Contract } from "./broker_contract_v11.ts";
import { turnsContract, twiceContract } from "./broker_contract_turns.ts";

/** Builds a fresh broker for one test, the function that disposes of it, and its contract hooks. */
export type MakeBroker = () => Promise<
  { broker: Broker; cleanup: () => Promise<void>; hooks?: ContractHooks }
>;

/** Sanitizer switches passed on to every Deno.test of the suite. */
export interface ContractOptions {
  sanitizeOps?: boolean;
  sanitizeResources?: boolean;
}

/** Registers the contract's tests, named `<name> broker: ...`, against brokers made by `make`. */
export function brokerContract(
  name: string,
  make: MakeBroker,
  options: ContractOptions = {},
): void {
  const test: ContractTest = (title, fn) => {
    Deno.test({
      name: `${name} broker: ${title}`,
      ...options,
      async fn(t) {
        const { broker, cleanup, hooks } = await make();
        try {
          if (!hooks) throw new Error("Cannot run the contract: the broker has no hooks");
          await broker.init();
          await fn(broker, t, hooks);
        } finally {
          await cleanup();
        }
      },
    });
  };

  test("submit creates a queued job with one queued event", async (broker) => {
    const job = newJob({ model: "grok-image", aspectRatio: "16:9" });
    const { created, job: record } = await broker.submit(job);
    assert.equal(created, true);
    assert.equal(record.status, "queued");
    assert.equal(record.attempts, 0);
    assert.equal(record.createdAt, record.updatedAt);
    assert.equal(new Date(record.createdAt).toISOString(), record.createdAt);
    const stored = await broker.get(job.id);
    assert.ok(stored);
    assert.deepEqual(pick(stored), { ...job, status: "queued", attempts: 0 });
    const events = await broker.events(job.id);
    assert.deepEqual(types(events), ["queued"]);
    assertNotification(events[0].notification, job.id);
    assert.ok(isEventId(events[0].eventId));
  });

  test("submit is idempotent by id", async (broker) => {
    const job = newJob();
    const first = await broker.submit(job);
    const second = await broker.submit({ ...job, owner: "mallory", prompt: "something else" });
    assert.equal(second.created, false);
    assert.deepEqual(pick(second.job), pick(first.job));
    assert.equal(second.job.createdAt, first.job.createdAt);
    assert.deepEqual(types(await broker.events(job.id)), ["queued"]);
    const claimed = await broker.claim("w1", 10, { blockMs: 1000 });
    assert.deepEqual(claimed.map((d) => d.jobId), [job.id]);
    assert.deepEqual(await broker.claim("w1", 10, { blockMs: 50 }), []);
  });

  test("get returns null for an unknown id and the image only when asked after success", async (broker) => {
    assert.equal(await broker.get(crypto.randomUUID()), null);
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    assert.equal((await broker.get(job.id, { image: true }))?.image, undefined);
    assert.equal(await broker.finish(delivery, SUCCESS), true);
    const plain = await broker.get(job.id);
    assert.equal(plain?.image, undefined);
    assert.equal(plain?.status, "succeeded");
    const full = await broker.get(job.id, { image: true });
    assert.equal(full?.image, IMAGE);
    assert.equal(full?.mimeType, "image/png");
    assert.equal(full?.revisedPrompt, SUCCESS.revisedPrompt);
    assert.equal(full?.error, undefined);
  });

  test("cancel ends a queued or running job exactly once", async (broker, t) => {
    await t.step("a queued job is canceled and then never starts", async () => {
      const job = newJob();
      await broker.submit(job);
      assert.equal(await broker.cancel(job.id), "canceled");
      assert.equal((await broker.get(job.id))?.status, "canceled");
      const events = await broker.events(job.id);
      assert.deepEqual(types(events), ["queued", "canceled"]);
      assertNotification(events[1].notification, job.id);
      assert.equal(events[1].notification.success, false);
      assert.equal(errorOf(events[1].notification), "Job canceled");
      const delivery = await claimJob(broker, job.id);
      assert.equal(await broker.start(delivery), null);
      assert.equal(await broker.cancel(job.id), "ended");
      await broker.ack(delivery);
    });
    await t.step("a running job is canceled and a later finish changes nothing", async () => {
      const job = newJob();
      await broker.submit(job);
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      assert.equal(await broker.cancel(job.id), "canceled");
      assert.deepEqual(await broker.renew("w1", [delivery]), ["canceled"]);
      assert.equal(await broker.finish(delivery, SUCCESS), false);
      assert.equal((await broker.get(job.id))?.status, "canceled");
      assert.deepEqual(types(await broker.events(job.id)), ["queued", "started", "canceled"]);
      assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
    });
    await t.step("an unknown job is missing", async () => {
      assert.equal(await broker.cancel(crypto.randomUUID()), "missing");
    });
  });

  test("start counts every attempt but appends started only from queued", async (broker) => {
    assert.equal(await broker.start(strayDelivery()), null);
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    const first = await broker.start(delivery);
    assert.equal(first?.status, "running");
    assert.equal(first?.attempts, 1);
    const again = await broker.start({ ...delivery, deliveries: 2 });
    assert.equal(again?.status, "running");
    assert.equal(again?.attempts, 2);
    assert.deepEqual(types(await broker.events(job.id)), ["queued", "started"]);
    await broker.finish(delivery, { type: "failed", error: "boom" });
    assert.equal(await broker.start(delivery), null);
  });

  test("finish stores the outcome once and acknowledges the entry", async (broker, t) => {
    await t.step("a success carries the image as a data URL", async () => {
      const job = newJob();
      await broker.submit(job);
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      assert.equal(await broker.finish(delivery, SUCCESS), true);
      assert.equal(await broker.finish(delivery, { type: "failed", error: "late" }), false);
      assert.equal(await broker.cancel(job.id), "ended");
      const events = await broker.events(job.id);
      assert.deepEqual(types(events), ["queued", "started", "succeeded"]);
      const done = events[2].notification;
      assertNotification(done, job.id);
      assert.deepEqual(done.type === "succeeded" && done.data, {
        image: dataUrl("image/png", IMAGE),
        mime_type: "image/png",
        revised_prompt: SUCCESS.revisedPrompt,
        images: [{ mime_type: "image/png", url: `/v1/jobs/${job.id}/images/0` }],
      });
      assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
    });
    await t.step("a failure carries its error and no data", async () => {
      const job = newJob();
      await broker.submit(job);
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      assert.equal(await broker.finish(delivery, { type: "failed", error: "boom" }), true);
      assert.equal(await broker.finish(delivery, SUCCESS), false);
      const stored = await broker.get(job.id, { image: true });
      assert.equal(stored?.status, "failed");
      assert.equal(stored?.error, "boom");
      assert.equal(stored?.image, undefined);
      const events = await broker.events(job.id);
      assert.deepEqual(types(events), ["queued", "started", "failed"]);
      assertNotification(events[2].notification, job.id);
      assert.equal(errorOf(events[2].notification), "boom");
    });
    await t.step("a success without a revised prompt has no revised_prompt", async () => {
      const job = newJob();
      await broker.submit(job);
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      await broker.finish(delivery, {
        type: "succeeded",
        image: IMAGE_BYTES,
        mimeType: "image/png",
      });
      const done = (await broker.events(job.id)).at(-1)?.notification;
      assert.equal(done?.type, "succeeded");
      assert.equal(done?.type === "succeeded" && "revised_prompt" in done.data, false);
      assert.equal((await broker.get(job.id))?.revisedPrompt, undefined);
    });
    await t.step("a missing job is only acknowledged", async () => {
      const stray = strayDelivery();
      assert.equal(await broker.finish(stray, SUCCESS), false);
      assert.deepEqual(await broker.events(stray.jobId), []);
    });
  });

  test("events returns a job's events after an id, in order", async (broker) => {
    assert.deepEqual(await broker.events(crypto.randomUUID()), []);
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    const all = await broker.events(job.id);
    const ids = all.map((event) => event.eventId);
    assert.equal(ids.length, 3);
    for (let i = 1; i < ids.length; i++) assert.ok(compareEventIds(ids[i - 1], ids[i]) < 0);
    for (const event of all) assertNotification(event.notification, job.id);
    assert.deepEqual(await broker.events(job.id, { after: ids[0] }), all.slice(1));
    assert.deepEqual(await broker.events(job.id, { after: ids[1] }), all.slice(2));
    assert.deepEqual(await broker.events(job.id, { after: ids[2] }), []);
  });

  test("sharedSecret returns one random 32-byte secret per name", async (broker) => {
    const first = await broker.sharedSecret("tickets");
    assert.equal(await broker.sharedSecret("tickets"), first);
    assert.match(first, /^[A-Za-z0-9_-]{43}=?$/);
    assert.equal(Uint8Array.fromBase64(first, { alphabet: "base64url" }).length, 32);
    assert.notEqual(await broker.sharedSecret("other"), first);
  });

  test("init, ping and close can be called more than once", async (broker) => {
    await broker.init();
    await broker.ping();
    await broker.close();
    await broker.close();
  });
  streamContract(test);
  limitsContract(test);
  v11Contract(test);
  turnsContract(test);
  twiceContract(test);
  leasesContract(test);
  lifetimeContract(test);
  imagesContract(test);
}
