/** The broker contract, part two: the jobs stream, leases, retries, seeds and the relay feed. */
import assert from "node:assert/strict";
import {
  dataUrl,
  isEventId,
  PROCESSING_ERROR,
  SESSION_EXPIRED,
} from "../../../lib/live/notifications.ts";
import {
  claimJob,
  type ContractTest,
  errorOf,
  GENEROUS_MS,
  IMAGE,
  newJob,
  pick,
  sameStreamJobs,
  seedDelivery,
  sleep,
  strayDelivery,
  SUCCESS,
  tailUntil,
  types,
  withoutImage,
} from "./broker_contract_helpers.ts";

/** Registers the tests of the stream side of the contract. */
export function streamContract(test: ContractTest): void {
  test("claim delivers each entry once, oldest first, up to count", async (broker) => {
    const jobs = sameStreamJobs(broker, 3);
    for (const job of jobs) await broker.submit(job);
    const first = await broker.claim("w1", 2, { blockMs: 1000 });
    assert.deepEqual(first.map((d) => d.jobId), [jobs[0].id, jobs[1].id]);
    for (const delivery of first) {
      assert.equal(delivery.deliveries, 1);
      assert.equal(delivery.seed, undefined);
    }
    const second = await broker.claim("w2", 10, { blockMs: 1000 });
    assert.deepEqual(second.map((d) => d.jobId), [jobs[2].id]);
    assert.equal(new Set([...first, ...second].map((d) => d.entryId)).size, 3);
    assert.deepEqual(await broker.claim("w1", 10, { blockMs: 50 }), []);
  });

  test("a blocking claim wakes up when a job is submitted", async (broker) => {
    const job = newJob();
    const began = performance.now();
    const claiming = broker.claim("w1", 1, { blockMs: 5000 });
    await sleep(50);
    await broker.submit(job);
    const claimed = broker.blocking
      ? await claiming
      : [...await claiming, await claimJob(broker, job.id)];
    assert.deepEqual(claimed.map((d) => d.jobId), [job.id]);
    assert.ok(performance.now() - began < GENEROUS_MS);
  });

  test("a claim returns no entries when its signal aborts", async (broker) => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 50);
    try {
      const began = performance.now();
      assert.deepEqual(
        await broker.claim("w1", 1, { blockMs: 5000, signal: controller.signal }),
        [],
      );
      assert.ok(performance.now() - began < GENEROUS_MS);
      assert.deepEqual(
        await broker.claim("w1", 1, { blockMs: 5000, signal: controller.signal }),
        [],
      );
    } finally {
      clearTimeout(timer);
    }
  });

  test("retryLater requeues a running job under a new entry once due", async (broker) => {
    const job = newJob();
    await broker.submit(job);
    const first = await claimJob(broker, job.id);
    await broker.start(first);
    assert.equal(await broker.retryLater(first, 60_000, "provider busy"), true);
    const waiting = await broker.get(job.id);
    assert.equal(waiting?.status, "queued");
    assert.equal(waiting?.error, undefined, "the retry's reason is not shown");
    assert.deepEqual(types(await broker.events(job.id)), ["queued", "started"]);
    assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
    assert.equal(await broker.promoteDue(Date.now()), 0);
    assert.deepEqual(await broker.claim("w1", 10, { blockMs: 50 }), []);
    assert.equal(await broker.promoteDue(Date.now() + 120_000), 1);
    const second = await claimJob(broker, job.id);
    assert.notEqual(second.entryId, first.entryId);
    assert.equal(second.deliveries, 1);
    const started = await broker.start(second);
    assert.equal(started?.status, "running");
    assert.equal(started?.attempts, 2);
    assert.deepEqual(types(await broker.events(job.id)), ["queued", "started", "started"]);
    assert.equal(await broker.finish(second, SUCCESS), true);
    assert.equal(await broker.retryLater(second, 0, "too late"), false);
    assert.equal(await broker.promoteDue(Date.now() + 120_000), 0);
    assert.equal((await broker.get(job.id))?.status, "succeeded");
  });

  test("reclaim takes over idle entries unless their lease is renewed", async (broker) => {
    const idleMs = 300;
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id, "w1");
    await broker.start(delivery);
    assert.deepEqual(await broker.reclaim("w2", 60_000, 10), []);
    await sleep(idleMs + 100);
    assert.deepEqual(await broker.renew("w1", [delivery]), ["running"]);
    assert.deepEqual(await broker.reclaim("w2", idleMs, 10), []);
    await sleep(idleMs + 100);
    const taken = await broker.reclaim("w2", idleMs, 10);
    assert.deepEqual(taken.map((d) => [d.entryId, d.jobId, d.deliveries]), [
      [delivery.entryId, job.id, 2],
    ]);
    assert.equal((await broker.start(taken[0]))?.attempts, 2);
    assert.equal(await broker.finish(taken[0], SUCCESS), true);
    assert.deepEqual(await broker.reclaim("w3", 0, 10), []);
  });

  test(
    "renew returns each job's status in order, lost for an entry not held, null for a gone job",
    async (broker, _t, hooks) => {
      const [a, b] = [newJob(), newJob()];
      await broker.submit(a);
      await broker.submit(b);
      const first = await claimJob(broker, a.id);
      const second = await claimJob(broker, b.id);
      await broker.start(first);
      const unadopted = crypto.randomUUID();
      await hooks.addSeedEntry({ id: unadopted, token: "t", prompt: "a seed fox" });
      const seed = await claimJob(broker, unadopted);
      const renewed = await broker.renew("w1", [second, strayDelivery(), first, seed]);
      assert.deepEqual(renewed, ["queued", "lost", "running", null]);
    },
  );

  test("adoptSeed creates a queued job once without enqueueing it", async (broker, t) => {
    const seed = seedDelivery("a seed fox");
    assert.equal(await broker.adoptSeed(seed, { owner: "bob", prompt: "a seed fox" }), true);
    const stored = await broker.get(seed.jobId);
    assert.deepEqual(stored && pick(stored), {
      id: seed.jobId,
      owner: "bob",
      prompt: "a seed fox",
      status: "queued",
      attempts: 0,
    });
    assert.deepEqual(types(await broker.events(seed.jobId)), ["queued"]);
    assert.equal(await broker.adoptSeed(seed, { owner: "eve", prompt: "other" }), false);
    assert.equal((await broker.get(seed.jobId))?.owner, "bob");
    assert.deepEqual(types(await broker.events(seed.jobId)), ["queued"]);
    assert.deepEqual(await broker.claim("w1", 10, { blockMs: 50 }), []);
    await t.step("a refused seed is adopted with no owner and can fail", async () => {
      const refused = seedDelivery("a bad token");
      const adoption = { owner: "", prompt: "a bad token" };
      assert.equal(await broker.adoptSeed(refused, adoption), true);
      assert.equal((await broker.get(refused.jobId))?.owner, "");
      assert.equal((await broker.start(refused))?.status, "running");
      assert.equal(await broker.finish(refused, { type: "failed", error: SESSION_EXPIRED }), true);
      const events = await broker.events(refused.jobId);
      assert.deepEqual(types(events), ["queued", "started", "failed"]);
      assert.equal(errorOf(events[2].notification), SESSION_EXPIRED);
    });
    await t.step("a seed naming a submitted job is not adopted", async () => {
      const job = newJob();
      await broker.submit(job);
      const clash = { ...seedDelivery("clash"), jobId: job.id };
      assert.equal(await broker.adoptSeed(clash, { owner: "eve", prompt: "clash" }), false);
      assert.equal((await broker.get(job.id))?.owner, job.owner);
    });
  });

  test(
    "deadLetter fails an unfinished job and acknowledges the entry",
    async (broker, _t, hooks) => {
      const job = newJob();
      await broker.submit(job);
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      await broker.deadLetter(delivery, "delivered too many times");
      const stored = await broker.get(job.id);
      assert.equal(stored?.status, "failed");
      assert.equal(stored?.error, PROCESSING_ERROR);
      const events = await broker.events(job.id);
      assert.deepEqual(types(events), ["queued", "started", "failed"]);
      assert.equal(errorOf(events[2].notification), PROCESSING_ERROR);
      assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
      assert.deepEqual(await hooks.deadReasons(), ["delivered too many times"]);
      await broker.deadLetter(delivery, "again");
      assert.equal((await broker.events(job.id)).length, 3);
      assert.deepEqual(
        await hooks.deadReasons(),
        ["delivered too many times"],
        "the lease had ended",
      );
    },
  );

  test("ack removes an entry without touching its job", async (broker) => {
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.ack(delivery);
    assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
    assert.equal((await broker.get(job.id))?.status, "queued");
    assert.deepEqual(types(await broker.events(job.id)), ["queued"]);
  });

  test("tail returns feed items in order and resumes from a cursor", async (broker) => {
    const began = performance.now();
    const head = await broker.tail(null, { blockMs: 5000 });
    assert.ok(performance.now() - began < GENEROUS_MS);
    assert.deepEqual(head.items, []);
    // One stream id per partition (joined by commas when there are several).
    assert.equal(head.cursor.split(",").length, broker.partitions);
    assert.ok(head.cursor.split(",").every(isEventId));
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    const first = await tailUntil(broker, head.cursor, job.id, 2);
    await broker.finish(delivery, SUCCESS);
    const rest = await tailUntil(broker, first.cursor, job.id, 1);
    const items = [...first.items, ...rest.items];
    // Every event goes on the feed, `queued` too (a stream of all of an owner's jobs needs it).
    const events = await broker.events(job.id);
    assert.deepEqual(items.map((item) => item.eventId), events.map((event) => event.eventId));
    assert.deepEqual(items.map(withoutImage), events.map((event) => withoutImage(event)));
    for (const item of items) {
      assert.equal(item.owner, job.owner);
      assert.ok(item.partition >= 0 && item.partition < broker.partitions);
      assert.ok(isEventId(item.cursor));
    }
    const image = items[2].notification.type === "succeeded" && items[2].notification.data.image;
    assert.ok(image === "" || image === dataUrl("image/png", IMAGE));
    const again = await tailUntil(broker, first.cursor, job.id, 1);
    assert.deepEqual(
      again.items.map((item) => item.eventId),
      rest.items.map((item) => item.eventId),
    );
    const idle = await broker.tail(rest.cursor, { blockMs: 50 });
    assert.deepEqual(idle, { cursor: rest.cursor, items: [] });
  });

  test("tail waits for a new item and stops when its signal aborts", async (broker) => {
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    const { cursor } = await broker.tail(null, { blockMs: 0 });
    const began = performance.now();
    const tailing = broker.tail(cursor, { blockMs: 5000 });
    await sleep(50);
    await broker.start(delivery);
    const woke = await tailing;
    const items = broker.blocking ? woke.items : (await tailUntil(broker, cursor, job.id, 1)).items;
    assert.deepEqual(items.map((item) => [item.jobId, item.notification.type]), [[
      job.id,
      "started",
    ]]);
    assert.ok(performance.now() - began < GENEROUS_MS);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 50);
    try {
      const latest = broker.blocking
        ? woke.cursor
        : (await broker.tail(null, { blockMs: 0 })).cursor;
      const aborted = await broker.tail(latest, { blockMs: 5000, signal: controller.signal });
      assert.deepEqual(aborted, { cursor: latest, items: [] });
      assert.ok(performance.now() - began < GENEROUS_MS * 2);
    } finally {
      clearTimeout(timer);
    }
  });
}
