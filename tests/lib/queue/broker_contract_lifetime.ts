/** The broker contract, part five: what a client sees of a job, and how long a job lives. */
import assert from "node:assert/strict";
import { PROCESSING_ERROR } from "../../../lib/live/notifications.ts";
import type { Broker, Outcome } from "../../../lib/queue/types.ts";
import {
  claimJob,
  type ContractTest,
  newJob,
  SUCCESS,
  tailUntil,
} from "./broker_contract_helpers.ts";

const RECORD_KEYS = ["attempts", "createdAt", "id", "owner", "prompt", "status", "updatedAt"];
const FAILED_EVENT_KEYS = ["at", "error", "id", "success", "type"];

function sortedKeys(value: object | null | undefined): string[] {
  return Object.keys(value ?? {}).sort();
}

/** Submits, claims and starts a job; returns its delivery. */
async function running(broker: Broker, id = crypto.randomUUID()) {
  await broker.submit(newJob({ id }));
  const delivery = await claimJob(broker, id);
  await broker.start(delivery);
  return delivery;
}

/** Registers the lifetime tests of the broker contract. */
export function lifetimeContract(test: ContractTest): void {
  test(
    "a failed job and its failed event have exactly the same fields on every broker, with no reason",
    async (broker, t, hooks) => {
      const { cursor } = await broker.tail(null, { blockMs: 0 });
      const failedKeys = [...RECORD_KEYS, "error"].sort();
      await t.step("a failure the worker reports", async () => {
        const delivery = await running(broker);
        // An outcome that carries more than the contract allows must not leak it.
        const failure = { type: "failed", error: "boom", reason: "provider said 400" };
        assert.equal(await broker.finish(delivery, failure as Outcome), true);
        assert.deepEqual(sortedKeys(await broker.get(delivery.jobId, { image: true })), failedKeys);
        const events = await broker.events(delivery.jobId);
        assert.deepEqual(sortedKeys(events.at(-1)?.notification), FAILED_EVENT_KEYS);
        const history = await broker.history(delivery.jobId);
        assert.deepEqual(sortedKeys(history?.events.at(-1)?.notification), FAILED_EVENT_KEYS);
        const feed = await tailUntil(broker, cursor, delivery.jobId, 3);
        assert.deepEqual(sortedKeys(feed.items[2].notification), FAILED_EVENT_KEYS);
      });
      await t.step(
        "a dead letter keeps its reason out of the job and in the dead letters",
        async () => {
          const delivery = await running(broker);
          assert.equal(await broker.deadLetter(delivery, "delivered 9 times to 10.0.0.7"), true);
          const stored = await broker.get(delivery.jobId);
          assert.deepEqual(sortedKeys(stored), failedKeys);
          assert.equal(stored?.error, PROCESSING_ERROR);
          const events = await broker.events(delivery.jobId);
          assert.deepEqual(sortedKeys(events.at(-1)?.notification), FAILED_EVENT_KEYS);
          assert.deepEqual(await hooks.deadReasons(), ["delivered 9 times to 10.0.0.7"]);
        },
      );
      await t.step("a retry shows no error while the job waits", async () => {
        const delivery = await running(broker);
        assert.equal(await broker.retryLater(delivery, 60_000, "provider said 503"), true);
        assert.deepEqual(sortedKeys(await broker.get(delivery.jobId)), RECORD_KEYS);
      });
      await t.step("a success and a queued job with options have the same fields too", async () => {
        const delivery = await running(broker);
        await broker.finish(delivery, SUCCESS);
        const done = [...RECORD_KEYS, "mimeType", "revisedPrompt", "imageCount", "mimeTypes"]
          .sort();
        assert.deepEqual(sortedKeys(await broker.get(delivery.jobId)), done);
        const job = newJob({ model: "grok-image", aspectRatio: "1:1" });
        const { job: submitted } = await broker.submit(job);
        const withOptions = [...RECORD_KEYS, "aspectRatio", "model"].sort();
        assert.deepEqual(sortedKeys(submitted), withOptions);
        assert.deepEqual(sortedKeys(await broker.get(job.id)), withOptions);
      });
    },
  );

  test(
    "a job expires only ttl after its end: queued, running, delayed and adopted jobs outlive it",
    async (broker, _t, hooks) => {
      const ran = await running(broker);
      const delayed = await running(broker);
      await broker.retryLater(delayed, 60_000, "provider busy");
      const finished = await running(broker);
      await broker.finish(finished, SUCCESS);
      const dead = await running(broker);
      await broker.deadLetter(dead, "delivered too many times");
      const canceled = newJob();
      await broker.submit(canceled);
      await broker.cancel(canceled.id);
      const seed = { entryId: "0-1", jobId: crypto.randomUUID(), deliveries: 1, consumer: "" };
      await broker.adoptSeed(seed, { owner: "bob", prompt: "a seed fox" });
      const queued = newJob();
      await broker.submit(queued);

      await hooks.passTtl();

      const statuses = [ran.jobId, delayed.jobId, seed.jobId, queued.id].map((id) =>
        broker.get(id).then((job) => job?.status ?? null)
      );
      assert.deepEqual(await Promise.all(statuses), ["running", "queued", "queued", "queued"]);
      for (const id of [finished.jobId, dead.jobId, canceled.id]) {
        assert.equal(await broker.get(id), null, "an ended job expires");
        assert.deepEqual(await broker.events(id), []);
      }
      assert.equal((await broker.events(ran.jobId)).length, 2, "its events live as long");
      assert.equal(await broker.finish(ran, SUCCESS), true);
      assert.equal(await broker.promoteDue(Date.now() + 3_600_000), 1);
      const retried = await claimJob(broker, delayed.jobId);
      assert.equal((await broker.start(retried))?.attempts, 2);
      assert.equal(await broker.finish(retried, SUCCESS), true);
    },
  );
}
