/** The broker contract against the in-memory broker, and what only that broker does. */
import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../../lib/errors.ts";
import { createMemoryBroker, type MemoryBroker } from "../../../lib/queue/memory.ts";
import type { Delivery } from "../../../lib/queue/types.ts";
import { brokerContract } from "./broker_contract.ts";
import type { ContractHooks } from "./broker_contract_helpers.ts";

const TTL_SEC = 60;

brokerContract("memory", () => {
  let offset = 0;
  const broker = createMemoryBroker({
    ttlSec: TTL_SEC,
    now: () => Date.now() + offset,
    notices: true,
  });
  const hooks: ContractHooks = {
    addSeedEntry: (seed) => Promise.resolve(broker.addSeedEntry(seed)),
    passTtl: () => Promise.resolve(void (offset += (TTL_SEC + 1) * 1000)),
    deadReasons: () => Promise.resolve(broker.deadLetters().map((letter) => letter.reason)),
  };
  return Promise.resolve({ broker, cleanup: () => broker.close(), hooks });
});

const IMAGE = "aGVsbG8=";

async function withBroker(
  fn: (broker: MemoryBroker) => Promise<void>,
  options: { ttlSec?: number; now?: () => number } = {},
): Promise<void> {
  const broker = createMemoryBroker(options);
  try {
    await fn(broker);
  } finally {
    await broker.close();
  }
}

async function claimOne(broker: MemoryBroker): Promise<Delivery> {
  const [delivery] = await broker.claim("w1", 1, { blockMs: 1000 });
  assert.ok(delivery);
  return delivery;
}

Deno.test("memory broker keeps unfinished jobs past ttlSec and drops ended ones ttlSec after their end", async () => {
  let clock = 1_700_000_000_000;
  await withBroker(async (broker) => {
    await broker.submit({ id: "quiet", owner: "alice", prompt: "a fox" });
    await broker.submit({ id: "busy", owner: "alice", prompt: "a fox" });
    await broker.submit({ id: "later", owner: "alice", prompt: "a fox" });
    clock += 30_000;
    const delivery = await claimOne(broker);
    assert.equal(delivery.jobId, "quiet");
    await broker.start(delivery);
    await broker.finish(delivery, {
      type: "succeeded",
      image: Uint8Array.fromBase64(IMAGE),
      mimeType: "image/png",
    });
    const running = await claimOne(broker);
    await broker.start(running);
    const delayed = await claimOne(broker);
    await broker.start(delayed);
    await broker.retryLater(delayed, 3_600_000, "provider busy");
    clock += 59_999;
    assert.equal((await broker.get("quiet", { image: true }))?.image, IMAGE);
    assert.equal((await broker.events("quiet")).length, 3);
    clock += 1;
    assert.equal(await broker.get("quiet", { image: true }), null);
    assert.deepEqual(await broker.events("quiet"), []);
    assert.equal(await broker.cancel("quiet"), "missing");
    clock += 86_400_000;
    assert.equal((await broker.get("busy"))?.status, "running");
    assert.equal((await broker.get("later"))?.status, "queued");
    assert.equal((await broker.events("busy")).length, 2);
    assert.equal(await broker.finish(running, { type: "failed", error: "boom" }), true);
    clock += 59_999;
    assert.equal((await broker.get("busy"))?.status, "failed");
    clock += 1;
    assert.equal(await broker.get("busy"), null);
    const again = await broker.submit({ id: "quiet", owner: "bob", prompt: "a new fox" });
    assert.equal(again.created, true);
    assert.equal(again.job.owner, "bob");
    assert.deepEqual((await broker.events("quiet")).map((e) => e.notification.type), ["queued"]);
  }, { ttlSec: 60, now: () => clock });
});

Deno.test("memory broker gives each job's events ids as Redis does: max(previous + 1, now in ms)", async () => {
  let clock = 5_000;
  await withBroker(async (broker) => {
    await broker.submit({ id: "a", owner: "alice", prompt: "a fox" });
    await broker.submit({ id: "b", owner: "alice", prompt: "a fox" });
    await broker.cancel("a");
    assert.deepEqual((await broker.events("a")).map((event) => event.eventId), ["5000", "5001"]);
    assert.deepEqual((await broker.events("b")).map((event) => event.eventId), ["5000"]);
    assert.deepEqual((await broker.events("a", { after: "5000" })).map((e) => e.eventId), ["5001"]);
    clock = 9_000;
    await broker.cancel("b");
    assert.deepEqual((await broker.events("b")).map((event) => event.eventId), ["5000", "9000"]);
  }, { now: () => clock });
});

Deno.test("memory broker close wakes blocked readers and later reads return at once", async () => {
  const broker = createMemoryBroker();
  const began = performance.now();
  const claiming = broker.claim("w1", 1, { blockMs: 60_000 });
  const tailing = broker.tail("0-0", { blockMs: 60_000 });
  await broker.close();
  assert.deepEqual(await claiming, []);
  assert.deepEqual(await tailing, { cursor: "0-0", items: [] });
  assert.deepEqual(await broker.claim("w1", 1, { blockMs: 60_000 }), []);
  assert.ok(performance.now() - began < 4000);
  await assert.rejects(broker.ping(), BrokerUnavailableError);
  await broker.close();
});

Deno.test("memory broker promotes a delayed retry by itself when it is due", async () => {
  await withBroker(async (broker) => {
    await broker.submit({ id: "retry", owner: "alice", prompt: "a fox" });
    const first = await claimOne(broker);
    await broker.start(first);
    assert.equal(await broker.retryLater(first, 20, "provider busy"), true);
    const [second] = await broker.claim("w1", 1, { blockMs: 4000 });
    assert.equal(second?.jobId, "retry");
    assert.notEqual(second.entryId, first.entryId);
    assert.equal(await broker.promoteDue(), 0);
  });
});

Deno.test("memory broker delivers seed entries with their fields", async () => {
  await withBroker(async (broker) => {
    const entryId = broker.addSeedEntry({ id: "seeded", token: "jwt", prompt: "a seed fox" });
    const delivery = await claimOne(broker);
    assert.deepEqual(delivery, {
      entryId,
      jobId: "seeded",
      deliveries: 1,
      consumer: "w1",
      seed: { token: "jwt", prompt: "a seed fox" },
    });
    assert.equal(await broker.adoptSeed(delivery, { owner: "bob", prompt: "a seed fox" }), true);
    assert.equal((await broker.start(delivery))?.owner, "bob");
  });
});

Deno.test("memory broker records dead letters with their reason", async () => {
  await withBroker(async (broker) => {
    await broker.submit({ id: "dead", owner: "alice", prompt: "a fox" });
    const delivery = await claimOne(broker);
    await broker.deadLetter(delivery, "delivered too many times");
    const [letter] = broker.deadLetters();
    assert.equal(letter.jobId, "dead");
    assert.equal(letter.entryId, delivery.entryId);
    assert.equal(letter.reason, "delivered too many times");
  });
});

Deno.test("memory broker prunes its per-owner rate windows and active sets as time passes", async () => {
  let clock = 1_700_000_000_000;
  await withBroker(async (broker) => {
    const limits = { ratePerMinute: 5, maxActivePerOwner: 5 };
    for (let i = 0; i < 50; i++) {
      await broker.submit({ id: `job-${i}`, owner: `owner-${i}`, prompt: "a fox" }, limits);
    }
    assert.deepEqual(broker.ownerMaps, { rateWindows: 50, activeSets: 50 });
    for (let i = 0; i < 49; i++) assert.equal(await broker.cancel(`job-${i}`), "canceled");
    clock += 61_000;
    await broker.submit({ id: "next", owner: "owner-0", prompt: "a fox" }, limits);
    assert.deepEqual(broker.ownerMaps, { rateWindows: 1, activeSets: 2 }, "owner-0 and owner-49");
    clock += 61_000;
    await broker.submit({ id: "plain", owner: "someone", prompt: "a fox" });
    assert.deepEqual(broker.ownerMaps, { rateWindows: 0, activeSets: 2 }, "both still have a job");
  }, { now: () => clock });
});

Deno.test("memory broker refuses a ttlSec that is not positive", () => {
  assert.throws(() => createMemoryBroker({ ttlSec: 0 }), RangeError);
});
