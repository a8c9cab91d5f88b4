/** The broker contract, turns: owners take turns in the waiting room, seed entries included. */
import assert from "node:assert/strict";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import type { Broker, Delivery } from "../../../lib/queue/types.ts";
import { type ContractTest, sameStreamJobs, SUCCESS } from "./broker_contract_helpers.ts";

/** Claims up to `count` in `partition` until that many came (or nothing more comes). */
async function claimIn(broker: Broker, partition: number, count: number): Promise<Delivery[]> {
  const out: Delivery[] = [];
  while (out.length < count) {
    const got = await broker.claim("c", count - out.length, { blockMs: 50, partition });
    if (got.length === 0) break;
    out.push(...got);
  }
  return out;
}

/** Registers the turn tests of the broker contract. */
export function turnsContract(test: ContractTest): void {
  test("a light owner's job waits a turn or two behind another owner's backlog, not all of it", async (broker) => {
    const jobs = sameStreamJobs(broker, 11);
    const p = partitionOf(jobs[0].id, broker.partitions);
    for (const job of jobs.slice(0, 10)) await broker.submit({ ...job, owner: "heavy" });
    await broker.submit({ ...jobs[10], owner: "light" });
    const first = await claimIn(broker, p, 3);
    assert.ok(
      first.some((d) => d.jobId === jobs[10].id),
      `the light job among the first three: ${first.map((d) => d.jobId).join(" ")}`,
    );
    // The heavy owner's jobs keep their order.
    const rest = await claimIn(broker, p, 10);
    const heavy = [...first, ...rest].map((d) => d.jobId).filter((id) => id !== jobs[10].id);
    assert.deepEqual(heavy, jobs.slice(0, 10).map((j) => j.id));
  });

  test(
    "an adopted seed entry's job takes its owner's turn in the waiting room",
    async (broker, _t, hooks) => {
      const jobs = sameStreamJobs(broker, 11);
      const p = partitionOf(jobs[0].id, broker.partitions);
      for (const job of jobs.slice(0, 10)) await broker.submit({ ...job, owner: "heavy" });
      const seedId = jobs[10].id;
      await hooks.addSeedEntry({ id: seedId, token: "t", prompt: "from the old front end" });
      // The seed entry went onto the stream as another service added it; a worker adopts and parks it.
      let seed: Delivery | undefined;
      const before: string[] = [];
      while (!seed) {
        const [next] = await claimIn(broker, p, 1);
        assert.ok(next, "the seed entry is claimed");
        if (next.seed) seed = next;
        else before.push(next.jobId);
      }
      assert.equal(
        await broker.adoptSeed(seed, { owner: "light", prompt: "from the old front end" }),
        true,
      );
      assert.equal(await broker.park(seed), true);
      assert.equal((await broker.get(seedId))?.status, "queued");
      const after = await claimIn(broker, p, 3);
      const next = after.map((d) => d.jobId);
      assert.ok(next.includes(seedId), `the seed's job within a turn or two: ${next.join(" ")}`);
      assert.equal(after.find((d) => d.jobId === seedId)?.seed, undefined, "back as a plain entry");
      assert.ok(before.length + next.indexOf(seedId) < 6, "not behind the heavy owner's backlog");
      // Parking again (a redelivered seed entry) adds nothing.
      assert.equal(await broker.park(seed), false);
    },
  );
}

/** Registers the tests of writes that may run twice (a client resending after a reconnect). */
export function twiceContract(test: ContractTest): void {
  test("finish run again with the same delivery and outcome answers done and writes nothing more", async (broker) => {
    const owner = `twice-${crypto.randomUUID()}`;
    const [job] = sameStreamJobs(broker, 1, { owner });
    await broker.submit(job);
    const p = partitionOf(job.id, broker.partitions);
    const [delivery] = await claimIn(broker, p, 1);
    await broker.start(delivery);
    const usage = { images: 1, costUsdTicks: 200_000_000 };
    const outcome = { ...SUCCESS, usage };
    assert.equal(await broker.finish(delivery, outcome), true);
    assert.equal(await broker.finish(delivery, outcome), true, "done, once more");
    assert.equal(await broker.finish(delivery, { type: "failed", error: "late" }), false);
    const types = (await broker.events(job.id)).map((e) => e.notification.type);
    assert.deepEqual(types, ["queued", "started", "succeeded"]);
    const day = new Date().toISOString().slice(0, 10);
    const seen = await broker.usage(owner, day);
    assert.deepEqual([seen.jobs.succeeded, seen.images], [1, 1], "counted once");
  });
}
