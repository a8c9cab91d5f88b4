/**
 * A broker with an image store: the job records only its objects (no bytes in Redis, a job's keys under
 * 4 KiB whatever the image size), and every image read answers from the store, once per process.
 */
import assert from "node:assert/strict";
import { JobImages, type Success } from "../../../lib/images/job_images.ts";
import { createMemoryImageStore } from "../../../lib/images/memory_store.ts";
import { createS3Store } from "../../../lib/images/s3_store.ts";
import { withImageStore } from "../../../lib/images/stored_broker.ts";
import type { ImageStore } from "../../../lib/images/store.ts";
import { createMemoryBroker } from "../../../lib/queue/memory.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import type { Broker, JobRecord } from "../../../lib/queue/types.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { redisCommand, startRedis } from "../../support/redis_server.ts";
import { S3_KEY, startS3 } from "../../support/s3_server.ts";
import { newJob } from "../queue/broker_contract_helpers.ts";

/** An image of `size` bytes (PNG magic, then a pattern) with `seed` in it. */
function png(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size).map((_, i) => (i * 31 + seed) & 0xff);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return bytes;
}

/** Runs one job to success with `images` written to the store first; returns its record. */
async function succeed(
  broker: Broker,
  images: JobImages,
  bytes: Uint8Array[],
): Promise<JobRecord> {
  const job = newJob({ n: bytes.length });
  await broker.submit(job);
  const [delivery] = await broker.claim("w", 1, { blockMs: 100 });
  const running = (await broker.start(delivery))!;
  const outcome: Success = {
    type: "succeeded",
    image: bytes[0],
    mimeType: "image/png",
    more: bytes.slice(1).map((image) => ({ image, mimeType: "image/png" })),
  };
  const kept = await images.keep(running, outcome);
  assert.equal(kept.objects?.length, bytes.length);
  assert.equal(await broker.finish(delivery, kept), true);
  return (await broker.get(job.id))!;
}

/** Every read of a stored-images broker gives the images back from the store. */
async function readsBack(broker: Broker, job: JobRecord, bytes: Uint8Array[]): Promise<void> {
  const base64 = bytes.map((b) => b.toBase64());
  assert.equal(job.imageCount, bytes.length);
  if (job.objects) assert.deepEqual(job.objects.map((o) => o.size), bytes.map((b) => b.byteLength));
  assert.equal((await broker.get(job.id, { image: true }))?.image, base64[0]);
  assert.equal(await broker.image(job.id), base64[0]);
  for (const [k, expected] of base64.entries()) {
    assert.equal(await broker.imageAt(job.id, k), expected);
  }
  assert.equal(await broker.imageAt(job.id, bytes.length), null);
  const success = (await broker.events(job.id)).at(-1)!;
  assert.equal(success.notification.type, "succeeded");
  const url = `data:image/png;base64,${base64[0]}`;
  assert.equal(success.notification.type === "succeeded" && success.notification.data.image, url);
  assert.ok(success.json === undefined || success.json.includes(url));
  const history = await broker.history(job.id);
  assert.equal(JSON.stringify(history?.events.at(-1)?.notification).includes(url), true);
}

Deno.test("With the in-memory store, the memory broker keeps no bytes and reads them back", async () => {
  const images = new JobImages(createMemoryImageStore({ prefix: "m/" }));
  const inner = createMemoryBroker();
  const broker = withImageStore(inner, images);
  try {
    const bytes = [png(2_000, 1), png(3_000, 2)];
    const job = await succeed(broker, images, bytes);
    assert.equal(await inner.image(job.id), null, "the broker itself holds no image");
    await readsBack(broker, job, bytes);
    assert.deepEqual(await images.store.list("m/"), job.objects!.map((o) => o.key));
  } finally {
    await broker.close();
  }
});

Deno.test({
  name:
    "With S3, a job's Redis keys hold no image bytes and stay under 4 KiB for 10 images of 2 MiB",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [redis, s3] = await Promise.all([startRedis(), startS3()]);
    const store: ImageStore = createS3Store({
      bucket: s3.bucket,
      prefix: "jobs/",
      endpoint: s3.url,
      region: "auto",
      ...S3_KEY,
    });
    const inner = createRedisBroker(createTcpClient({ url: redis.url }), { prefix: "st:" });
    const images = new JobImages(store);
    const broker = withImageStore(inner, images);
    try {
      await broker.init();
      // n = 10, the most a job may ask for: links and object keys, no bytes, whatever their size.
      const bytes = Array.from({ length: 10 }, (_, k) => png(210 * 1024, k + 1));
      const job = await succeed(broker, images, bytes);
      const key = `st:job:${job.id}`;
      const fields = await redisCommand(redis.port, ["HKEYS", key]) as (string | Uint8Array)[];
      const names = fields.map((f) => typeof f === "string" ? f : new TextDecoder().decode(f));
      assert.ok(!names.some((n) => /^(img|image)(:|$)/.test(n)), names.join(" "));
      const usage = Number(
        await redisCommand(redis.port, ["MEMORY", "USAGE", key, "SAMPLES", "0"]),
      );
      assert.ok(usage < 4096, `the job hash takes ${usage} bytes`);
      assert.equal(await inner.image(job.id), null, "Redis itself has no image");
      assert.deepEqual(
        (await s3.keys("jobs/")).sort(),
        bytes.map((_, k) => `jobs/${job.id}/1/${k}.png`).sort(),
      );
      await readsBack(broker, job, bytes);

      // Another process (a cold cache): its many readers cost the store one GET per object.
      const other = withImageStore(inner, new JobImages(store));
      const first = job.objects![0].key;
      const before = s3.gets(first);
      await Promise.all(Array.from({ length: 20 }, () => other.history(job.id)));
      await Promise.all(Array.from({ length: 5 }, () => other.image(job.id)));
      assert.equal(s3.gets(first) - before, 1);
    } finally {
      await broker.close();
      await Promise.all([redis.stop(), s3.stop()]);
    }
  },
});

Deno.test("A job stored with its bytes before the store was configured still reads back", async () => {
  const inner = createMemoryBroker();
  const bytes = [png(500, 7)];
  const job = newJob();
  await inner.submit(job);
  const [delivery] = await inner.claim("w", 1, { blockMs: 10 });
  await inner.start(delivery);
  await inner.finish(delivery, { type: "succeeded", image: bytes[0], mimeType: "image/png" });
  const broker = withImageStore(inner, new JobImages(createMemoryImageStore()));
  await readsBack(broker, (await broker.get(job.id))!, bytes);
  await broker.close();
});
