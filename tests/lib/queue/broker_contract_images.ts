/** The broker contract's part of "All of xAI's image API": parameters, references, several images. */
import assert from "node:assert/strict";
import { dataUrl, linkedJson } from "../../../lib/live/notifications.ts";
import type { Outcome } from "../../../lib/queue/types.ts";
import {
  claimJob,
  type ContractTest,
  IMAGE,
  IMAGE_BYTES,
  newJob,
} from "./broker_contract_helpers.ts";

/** A 1x1 JPEG's first bytes are enough for the broker: it stores what it is given. */
const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);
const WEBP = new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8 ");

/** A success of three images (PNG, JPEG, WebP). */
const THREE: Outcome = {
  type: "succeeded",
  image: IMAGE_BYTES,
  mimeType: "image/png",
  more: [{ image: JPEG, mimeType: "image/jpeg" }, { image: WEBP, mimeType: "image/webp" }],
};

/** Registers the image tests of the broker contract. */
export function imagesContract(test: ContractTest): void {
  test("a job keeps n, resolution, quality and its references until it ends", async (broker) => {
    const references = ["data:image/png;base64," + IMAGE, "https://example.com/a.png", "job:x#1"];
    const job = newJob({ n: 4, resolution: "2k", quality: "high", references });
    const { job: submitted } = await broker.submit(job);
    for (const record of [submitted, await broker.get(job.id)]) {
      assert.equal(record?.n, 4);
      assert.equal(record?.resolution, "2k");
      assert.equal(record?.quality, "high");
      assert.equal(record?.referenceCount, 3);
      assert.equal("references" in (record ?? {}), false);
    }
    assert.deepEqual(await broker.references(job.id), references);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    assert.deepEqual(await broker.references(job.id), references);
    await broker.finish(delivery, { type: "failed", error: "boom" });
    assert.deepEqual(await broker.references(job.id), []);
    const plain = newJob();
    await broker.submit(plain);
    assert.deepEqual(await broker.references(plain.id), []);
    assert.equal((await broker.get(plain.id))?.n, undefined);
  });

  test("a success stores every image, the first as before", async (broker, t) => {
    const job = newJob({ n: 3 });
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    assert.equal(await broker.finish(delivery, THREE), true);
    await t.step("each image reads back by its index", async () => {
      assert.equal(await broker.image(job.id), IMAGE);
      assert.equal(await broker.imageAt(job.id, 0), IMAGE);
      assert.equal(await broker.imageAt(job.id, 1), JPEG.toBase64());
      assert.equal(await broker.imageAt(job.id, 2), WEBP.toBase64());
      assert.equal(await broker.imageAt(job.id, 3), null);
    });
    await t.step("the record counts them and knows their media types", async () => {
      const record = await broker.get(job.id, { image: true });
      assert.equal(record?.imageCount, 3);
      assert.deepEqual(record?.mimeTypes, ["image/png", "image/jpeg", "image/webp"]);
      assert.equal(record?.mimeType, "image/png");
      assert.equal(record?.image, IMAGE);
    });
    await t.step("the succeeded event links every image and inlines the first", async () => {
      const last = (await broker.events(job.id)).at(-1)!;
      const done = last.notification;
      assert.ok(done?.type === "succeeded");
      assert.equal(done.data.image, dataUrl("image/png", IMAGE));
      const base = `/v1/jobs/${job.id}/images`;
      // Stored bare: each delivery puts a current ticket on them.
      assert.deepEqual(done.data.images, [
        { mime_type: "image/png", url: `${base}/0` },
        { mime_type: "image/jpeg", url: `${base}/1` },
        { mime_type: "image/webp", url: `${base}/2` },
      ]);
      const delivered = JSON.parse(linkedJson(last, "t.k+t"));
      assert.deepEqual(delivered.data.images.map((link: { url: string }) => link.url), [
        `${base}/0?ticket=t.k%2Bt`,
        `${base}/1?ticket=t.k%2Bt`,
        `${base}/2?ticket=t.k%2Bt`,
      ]);
      assert.equal(delivered.data.image, dataUrl("image/png", IMAGE));
      const history = await broker.history(job.id);
      assert.deepEqual(history?.events.at(-1)?.notification, done);
    });
  });

  test("a single image counts one, and a failure keeps its error code", async (broker) => {
    const one = newJob();
    await broker.submit(one);
    const first = await claimJob(broker, one.id);
    await broker.start(first);
    await broker.finish(first, { type: "succeeded", image: IMAGE_BYTES, mimeType: "image/png" });
    assert.equal((await broker.get(one.id))?.imageCount, 1);
    assert.equal(await broker.imageAt(one.id, 1), null);
    const refused = newJob();
    await broker.submit(refused);
    const second = await claimJob(broker, refused.id);
    await broker.start(second);
    const outcome = { type: "failed", error: "refused", errorCode: "content_policy" } as const;
    await broker.finish(second, outcome);
    const record = await broker.get(refused.id);
    assert.equal(record?.errorCode, "content_policy");
    assert.equal(record?.imageCount, undefined);
    const failed = (await broker.events(refused.id)).at(-1)?.notification;
    assert.ok(failed?.type === "failed");
    assert.equal(failed.error_code, "content_policy");
  });

  test("a success kept in an image store records its objects and none of the bytes", async (broker) => {
    const job = newJob({ n: 3 });
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    const running = (await broker.start(delivery))!;
    const objects = [["png", 9], ["jpg", 8], ["webp", 16]].map(([ext, size], k) => ({
      key: `imgs/${job.id}/${running.attempts}/${k}.${ext}`,
      mimeType: ["image/png", "image/jpeg", "image/webp"][k],
      size: Number(size),
    }));
    assert.equal(await broker.finish(delivery, { ...THREE, objects } as Outcome), true);
    const record = await broker.get(job.id, { image: true });
    assert.deepEqual(record?.objects, objects);
    assert.equal(record?.imageCount, 3);
    assert.deepEqual(record?.mimeTypes, ["image/png", "image/jpeg", "image/webp"]);
    assert.equal(record?.image, undefined, "no bytes in the broker");
    assert.equal(await broker.image(job.id), null);
    assert.equal(await broker.imageAt(job.id, 2), null);
    const done = (await broker.events(job.id)).at(-1)?.notification;
    assert.ok(done?.type === "succeeded");
    assert.equal(done.data.image, "", "left for the store's readers to fill");
    assert.equal((await broker.list(job.owner, { limit: 5 })).jobs[0].objects?.length, 3);
  });
}
