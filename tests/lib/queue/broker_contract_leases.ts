/** The broker contract, part four: fenced leases, duplicate entries, reclaim's cursor, consumer upkeep. */
import assert from "node:assert/strict";
import {
  claimJob,
  type ContractTest,
  newJob,
  sameStreamJobs,
  SUCCESS,
  types,
} from "./broker_contract_helpers.ts";

/** Registers the lease tests of the broker contract. */
export function leasesContract(test: ContractTest): void {
  test(
    "a lease taken over by another consumer is never taken back and its old holder writes nothing",
    async (broker, _t, hooks) => {
      const job = newJob();
      await broker.submit(job);
      const stale = await claimJob(broker, job.id, "w1");
      assert.equal(stale.consumer, "w1");
      await broker.start(stale);
      const [taken] = await broker.reclaim("w2", 0, 10);
      assert.deepEqual(
        [taken?.entryId, taken?.consumer, taken?.deliveries],
        [stale.entryId, "w2", 2],
      );
      assert.deepEqual(await broker.renew("w1", [stale]), ["lost"]);
      assert.deepEqual(await broker.renew("w2", [taken]), ["running"], "w1 did not take it back");
      assert.equal(await broker.start(stale), null, "the old holder does not run it beside w2");
      assert.equal(await broker.finish(stale, SUCCESS), false);
      assert.equal(await broker.retryLater(stale, 0, "provider busy"), false);
      await broker.deadLetter(stale, "delivered too many times");
      await broker.ack(stale);
      assert.equal((await broker.get(job.id))?.status, "running");
      assert.deepEqual(types(await broker.events(job.id)), ["queued", "started"]);
      assert.deepEqual(await hooks.deadReasons(), []);
      assert.equal(await broker.promoteDue(Date.now() + 3_600_000), 0, "no retry was scheduled");
      assert.deepEqual(await broker.renew("w2", [taken]), ["running"], "the entry is still w2's");
      const rerun = await broker.start(taken);
      assert.deepEqual([rerun?.status, rerun?.attempts], ["running", 2], "a takeover runs");
      assert.equal(await broker.finish(taken, SUCCESS), true);
      assert.deepEqual(await broker.renew("w2", [taken]), ["lost"], "an acknowledged entry");
      assert.deepEqual(types(await broker.events(job.id)), ["queued", "started", "succeeded"]);
    },
  );

  test(
    "a duplicate entry of a running job gets nothing to run while its first entry keeps it",
    async (broker, _t, hooks) => {
      const id = crypto.randomUUID();
      const seed = { id, token: "t", prompt: "a seed fox" };
      const adoption = { owner: "bob", prompt: seed.prompt };
      await hooks.addSeedEntry(seed);
      await hooks.addSeedEntry(seed);
      const first = await claimJob(broker, id, "w1");
      const duplicate = await claimJob(broker, id, "w2");
      assert.notEqual(first.entryId, duplicate.entryId);
      assert.equal(await broker.adoptSeed(first, adoption), true);
      assert.equal(await broker.adoptSeed(duplicate, adoption), false);
      assert.equal((await broker.start(first))?.attempts, 1);
      assert.equal(await broker.start(duplicate), null);
      await broker.ack(duplicate);
      assert.deepEqual(await broker.renew("w1", [first]), ["running"]);
      const [again] = await broker.reclaim("w3", 0, 10);
      assert.equal(again?.entryId, first.entryId);
      const rerun = await broker.start(again);
      assert.deepEqual([rerun?.status, rerun?.attempts], ["running", 2], "the same entry reruns");
      assert.equal(await broker.finish(again, SUCCESS), true);
      assert.deepEqual(types(await broker.events(id)), ["queued", "started", "succeeded"]);
    },
  );

  test("a delivery that lost its lease before it started cannot leave the job running without an entry", async (broker) => {
    const job = newJob();
    await broker.submit(job);
    const stale = await claimJob(broker, job.id, "w1");
    const [taken] = await broker.reclaim("w2", 0, 10);
    await broker.start(taken);
    assert.equal(await broker.retryLater(taken, 0, "provider busy"), true);
    assert.equal(await broker.start(stale), null, "the job waits for its retry");
    assert.equal((await broker.get(job.id))?.status, "queued");
    assert.equal(await broker.promoteDue(Date.now() + 60_000), 1);
    const retried = await claimJob(broker, job.id, "w3");
    assert.equal((await broker.start(retried))?.status, "running");
    assert.equal(await broker.finish(retried, SUCCESS), true);
  });

  test("promoteDue drops a job that was canceled while it waited for its retry", async (broker) => {
    const job = newJob();
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    assert.equal(await broker.retryLater(delivery, 60_000, "provider busy"), true);
    assert.equal(await broker.cancel(job.id), "canceled");
    assert.equal(await broker.promoteDue(Date.now() + 120_000), 0);
    assert.deepEqual(await broker.claim("w1", 10, { blockMs: 50 }), []);
  });

  test(
    "a duplicate entry that starts a queued job first runs it and the other gets nothing",
    async (broker, _t, hooks) => {
      const id = crypto.randomUUID();
      const seed = { id, token: "t", prompt: "a seed fox" };
      await hooks.addSeedEntry(seed);
      await hooks.addSeedEntry(seed);
      const first = await claimJob(broker, id, "w1");
      const second = await claimJob(broker, id, "w1");
      await broker.adoptSeed(first, { owner: "bob", prompt: seed.prompt });
      assert.equal((await broker.start(second))?.status, "running");
      assert.equal(await broker.start(first), null);
      assert.equal(await broker.finish(second, SUCCESS), true);
    },
  );

  test("reclaim resumes where its last scan stopped and counts each entry's deliveries", async (broker) => {
    const jobs = sameStreamJobs(broker, 3);
    for (const job of jobs) await broker.submit(job);
    for (const job of jobs) await claimJob(broker, job.id, "w1");
    const taken = [];
    for (let i = 0; i < 4; i++) taken.push(...await broker.reclaim("w2", 0, 1));
    assert.deepEqual(taken.map((d) => [d.jobId, d.deliveries, d.consumer]), [
      [jobs[0].id, 2, "w2"],
      [jobs[1].id, 2, "w2"],
      [jobs[2].id, 2, "w2"],
      [jobs[0].id, 3, "w2"],
    ]);
    const all = await broker.reclaim("w3", 0, 10);
    assert.deepEqual(all.map((d) => [d.jobId, d.deliveries]), [
      [jobs[1].id, 3],
      [jobs[2].id, 3],
    ], "the scan resumes after the first entry and ends the round");
    assert.deepEqual((await broker.reclaim("w3", 0, 10)).map((d) => d.deliveries), [4, 4, 4]);
  });

  test("pruneConsumers removes idle consumers with nothing pending", async (broker) => {
    // One stream, so w1 takes `held` before w2 looks for `done` (claim order across streams is free).
    const [held, done] = sameStreamJobs(broker, 2);
    await broker.submit(held);
    await broker.submit(done);
    const delivery = await claimJob(broker, held.id, "w1");
    const finished = await claimJob(broker, done.id, "w2");
    await broker.start(finished);
    assert.equal(await broker.finish(finished, SUCCESS), true);
    assert.equal(await broker.pruneConsumers(3_600_000), 0, "nobody has been idle that long");
    assert.equal(await broker.pruneConsumers(0), 1, "w2, not w1 that holds an entry");
    assert.equal(await broker.pruneConsumers(0), 0);
    assert.deepEqual(await broker.renew("w1", [delivery]), ["queued"]);
    await broker.start(delivery);
    assert.equal(await broker.finish(delivery, SUCCESS), true);
    assert.equal(await broker.pruneConsumers(0), 1, "w1, once it holds nothing");
  });
}
