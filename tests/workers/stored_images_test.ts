/**
 * Objects no job records are deleted: a run whose terminal write lost its lease deletes its own, and a
 * later run that ends the job deletes those of the runs before it (a crash between write and end).
 */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { JobImages } from "../../lib/images/job_images.ts";
import { createMemoryImageStore } from "../../lib/images/memory_store.ts";
import { withImageStore } from "../../lib/images/stored_broker.ts";
import { createMemoryBroker } from "../../lib/queue/memory.ts";
import type { Outcome } from "../../lib/queue/types.ts";
import { keepImages, settleImages } from "../../workers/stored_images.ts";
import { newJob } from "../lib/queue/broker_contract_helpers.ts";

const log = getLogger(["imagejobs", "test"]);
const success = (seed: number): Outcome => ({
  type: "succeeded",
  image: new Uint8Array([0x89, 0x50, 0x4e, 0x47, seed]),
  mimeType: "image/png",
  more: [{ image: new Uint8Array([0xff, 0xd8, 0xff, seed]), mimeType: "image/jpeg" }],
});

Deno.test("A crashed run's objects go when a later run ends the job; a run that lost its lease deletes its own", async () => {
  const images = new JobImages(createMemoryImageStore({ prefix: "p/" }));
  const deps = { images, log };
  const broker = withImageStore(createMemoryBroker(), images);
  const signal = new AbortController().signal;
  try {
    const job = newJob();
    await broker.submit(job);
    // Run 1 writes its images, then its process stops before the terminal write.
    const [first] = await broker.claim("w1", 1, { blockMs: 10 });
    const run1 = (await broker.start(first))!;
    const kept1 = await keepImages(run1, success(1), deps, signal);
    assert.deepEqual(await images.store.list(`p/${job.id}/`), [
      `p/${job.id}/1/0.png`,
      `p/${job.id}/1/1.jpg`,
    ]);
    // Run 2 takes the entry over (attempt 2) and writes under its own keys.
    const [second] = await broker.reclaim("w2", 0, 1);
    const run2 = (await broker.start(second))!;
    assert.equal(run2.attempts, 2);
    const kept2 = await keepImages(run2, success(2), deps, signal);
    // Run 1 wakes up: its terminal write is refused (lease lost), and it deletes its own objects.
    assert.equal(await broker.finish(first, kept1), false);
    await settleImages(run1, kept1, false, deps);
    assert.deepEqual(await images.store.list(`p/${job.id}/`), [
      `p/${job.id}/2/0.png`,
      `p/${job.id}/2/1.jpg`,
    ]);
    // Put back an object of run 1 (as a crash would leave it): run 2's end deletes it.
    await images.store.put(`p/${job.id}/1/0.png`, new Uint8Array([1]), "image/png");
    assert.equal(await broker.finish(second, kept2), true);
    await settleImages(run2, kept2, true, deps);
    const left = await images.store.list(`p/${job.id}/`);
    assert.deepEqual(left, [`p/${job.id}/2/0.png`, `p/${job.id}/2/1.jpg`]);
    assert.equal(await broker.imageAt(job.id, 1), new Uint8Array([0xff, 0xd8, 0xff, 2]).toBase64());
  } finally {
    await broker.close();
  }
});
