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
    assert.deepEqual(history?.events.map((e) => e.eventId), ["1", "2", "3"]);
  });
}
