/** The broker contract, part three: limits checked atomically with a submit. */
import assert from "node:assert/strict";
import {
  claimJob,
  type ContractTest,
  newJob,
  sameStreamJobs,
  SUCCESS,
} from "./broker_contract_helpers.ts";

/** Registers the limit tests of the broker contract. */
export function limitsContract(test: ContractTest): void {
  test("submit refuses past the owner's active-job cap and counts again once jobs end", async (broker) => {
    const owner = `owner-${crypto.randomUUID()}`;
    const limits = { maxActivePerOwner: 2 };
    const a = newJob({ owner });
    const b = newJob({ owner });
    assert.equal((await broker.submit(a, limits)).created, true);
    assert.equal((await broker.submit(b, limits)).created, true);
    const refused = newJob({ owner });
    const third = await broker.submit(refused, limits);
    assert.deepEqual([third.created, third.refused], [false, "owner_busy"]);
    assert.equal(await broker.get(refused.id), null, "a refused submit writes nothing");
    assert.equal(
      (await broker.submit(newJob(), limits)).created,
      true,
      "other owners are not held",
    );
    assert.equal(await broker.cancel(a.id), "canceled");
    const delivery = await claimJob(broker, b.id);
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    assert.equal((await broker.submit(refused, limits)).created, true);
    const again = await broker.submit(refused, limits);
    assert.deepEqual([again.created, again.refused], [false, undefined], "idempotency comes first");
  });

  test("the daily image quota refuses past the cap until the day ends, and gives back what was not made", async (broker) => {
    const owner = `quota-${crypto.randomUUID()}`;
    const limits = { maxImagesPerDay: 3, images: 1 };
    const jobs = [newJob({ owner }), newJob({ owner }), newJob({ owner })];
    for (const job of jobs) assert.equal((await broker.submit(job, limits)).created, true);
    const over = newJob({ owner });
    const refused = await broker.submit(over, limits);
    assert.deepEqual([refused.created, refused.refused], [false, "quota_exceeded"]);
    assert.ok(refused.retryAfterSec! >= 1 && refused.retryAfterSec! <= 86_400);
    assert.equal(await broker.get(over.id), null, "a refused submit writes nothing");
    assert.equal(
      (await broker.submit(newJob(), limits)).created,
      true,
      "other owners are not held",
    );
    // A canceled job and a failed one give their image back; a success keeps it.
    assert.equal(await broker.cancel(jobs[0].id), "canceled");
    const failing = await claimJob(broker, jobs[1].id);
    await broker.start(failing);
    await broker.finish(failing, { type: "failed", error: "Error processing job" });
    const ok = await claimJob(broker, jobs[2].id);
    await broker.start(ok);
    const usage = { images: 1, costUsdTicks: 200_000_000 };
    await broker.finish(ok, { ...SUCCESS, usage });
    const day = new Date().toISOString().slice(0, 10);
    const seen = await broker.usage(owner, day);
    assert.deepEqual(seen, {
      day,
      images: 1,
      costUsdTicks: 200_000_000,
      jobs: { succeeded: 1, failed: 1, canceled: 1 },
      reserved: 1,
    });
    assert.deepEqual((await broker.get(jobs[2].id))?.usage, usage);
    assert.equal((await broker.submit(newJob({ owner }), limits)).created, true);
    assert.equal((await broker.submit(newJob({ owner }), limits)).created, true);
    const full = await broker.submit(newJob({ owner }), limits);
    assert.equal(full.refused, "quota_exceeded");
    assert.deepEqual((await broker.usage(owner, "2000-01-01")).reserved, 0);
    // A cap set after images were made today counts them: 1 made without a reservation, cap 1.
    const late = `late-${crypto.randomUUID()}`;
    const first = newJob({ owner: late });
    await broker.submit(first);
    const made = await claimJob(broker, first.id);
    await broker.start(made);
    await broker.finish(made, { ...SUCCESS, usage });
    const capped = await broker.submit(newJob({ owner: late }), { maxImagesPerDay: 1 });
    assert.equal(capped.refused, "quota_exceeded");
  });

  test("submit refuses with backlog when the queue holds maxQueued entries", async (broker) => {
    // With N partitions each stream holds maxQueued / N (rounded up): these two share one.
    const [first, second] = sameStreamJobs(broker, 2);
    assert.equal((await broker.submit(first, { maxQueued: 1 })).created, true);
    const result = await broker.submit(second, { maxQueued: 1 });
    assert.deepEqual([result.created, result.refused], [false, "backlog"]);
    assert.equal(await broker.get(second.id), null);
    const delivery = await claimJob(broker, first.id);
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    assert.equal((await broker.submit(second, { maxQueued: 1 })).created, true);
  });

  test("submit holds each owner to ratePerMinute, not counting replays of an existing id", async (broker) => {
    const owner = `owner-${crypto.randomUUID()}`;
    const limits = { ratePerMinute: 2 };
    const first = newJob({ owner });
    assert.equal((await broker.submit(first, limits)).created, true);
    assert.equal((await broker.submit(first, limits)).created, false, "a replay");
    assert.equal((await broker.submit(newJob({ owner }), limits)).created, true);
    const over = newJob({ owner });
    const refused = await broker.submit(over, limits);
    assert.deepEqual([refused.created, refused.refused], [false, "rate_limited"]);
    assert.ok(
      refused.retryAfterSec! >= 1 && refused.retryAfterSec! <= 60,
      `${refused.retryAfterSec}`,
    );
    assert.equal(await broker.get(over.id), null);
    assert.equal(
      (await broker.submit(newJob(), limits)).created,
      true,
      "other owners are not held",
    );
  });

  test("history returns the owner and every event in one read, or null", async (broker) => {
    const job = newJob();
    assert.equal(await broker.history(job.id), null);
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    const history = await broker.history(job.id);
    assert.equal(history?.owner, job.owner);
    assert.deepEqual(history?.events, await broker.events(job.id));
    const ids = history!.events.map((e) => Number(e.eventId));
    assert.equal(ids.length, 3);
    assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `event ids increase: ${ids}`);
  });
}
