/** The S3-compatible store against a real s3rver on 127.0.0.1: signed requests, presigned URLs, faults. */
import assert from "node:assert/strict";
import { JobImages, MAX_URL_SECONDS } from "../../../lib/images/job_images.ts";
import { createS3Store } from "../../../lib/images/s3_store.ts";
import { ImageStoreUnavailableError, jobFolder, objectKey } from "../../../lib/images/store.ts";
import { S3_KEY, type S3Server, startS3 } from "../../support/s3_server.ts";

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

function storeOn(
  s3: S3Server,
  options: { endpoint?: string; timeoutMs?: number; key?: string } = {},
) {
  return createS3Store({
    bucket: s3.bucket,
    prefix: "img/",
    endpoint: options.endpoint ?? s3.url,
    region: "auto",
    ...S3_KEY,
    accessKeyId: options.key ?? S3_KEY.accessKeyId,
    timeoutMs: options.timeoutMs,
  });
}

function s3Test(name: string, fn: (s3: S3Server) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const s3 = await startS3();
      try {
        await fn(s3);
      } finally {
        await s3.stop();
      }
    },
  });
}

s3Test("The S3 store writes, reads, lists and deletes objects with signed requests", async (s3) => {
  const store = storeOn(s3);
  const key = objectKey(store.prefix, {
    jobId: "a:b.c",
    attempt: 2,
    index: 1,
    mimeType: "image/png",
  });
  assert.equal(key, "img/a:b.c/2/1.png");
  await store.put(key, PNG, "image/png");
  assert.deepEqual(await store.get(key), PNG);
  assert.equal(await store.get("img/a:b.c/2/9.png"), null, "a missing object is null");
  assert.deepEqual(await store.list(jobFolder(store.prefix, "a:b.c")), [key]);
  assert.deepEqual(await s3.keys(), [key], "the object is in the bucket under its key");
  await store.delete([key, "img/never-written"]);
  assert.deepEqual(await s3.keys(), []);
  assert.equal(s3.requests.filter((r) => r.method === "PUT").length, 1);
});

s3Test("A job id of dots stays inside the prefix (no dot segment in any URL)", async (s3) => {
  const store = storeOn(s3);
  for (const jobId of [".", ".."]) {
    const key = objectKey(store.prefix, { jobId, attempt: 1, index: 0, mimeType: "image/jpeg" });
    assert.equal(key, `img/~${jobId}/1/0.jpg`);
    await store.put(key, PNG, "image/jpeg");
    assert.deepEqual(await store.get(key), PNG);
  }
  const keys = await s3.keys();
  assert.equal(keys.length, 2);
  assert.ok(keys.every((key) => key.startsWith("img/~")), keys.join(", "));
});

s3Test(
  "A presigned URL reads the object without credentials, for at most 15 minutes",
  async (s3) => {
    const store = storeOn(s3);
    const images = new JobImages(store);
    const key = "img/job1/1/0.png";
    await store.put(key, PNG, "image/png");
    const job = {
      id: "job1",
      owner: "o",
      status: "succeeded" as const,
      prompt: "p",
      createdAt: "",
      updatedAt: "",
      attempts: 1,
      objects: [{ key, mimeType: "image/png", size: PNG.byteLength }],
    };
    const url = (await images.url(job, 0, 3_600))!;
    assert.equal(new URL(url).searchParams.get("X-Amz-Expires"), String(MAX_URL_SECONDS));
    assert.equal(new URL(url).searchParams.get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Content-Type"), "image/png");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), PNG);
    assert.equal(await images.url(job, 1), null, "no object at that index");
    // The store enforces the expiry of what it signs.
    const short = await store.presign!(key, 1);
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const expired = await fetch(short);
    assert.equal(expired.status, 403);
    await expired.body?.cancel();
  },
);

s3Test(
  "A refused key, a 5xx, a slow store and a stopped store are ImageStoreUnavailableError",
  async (s3) => {
    await assert.rejects(
      () => storeOn(s3, { key: "NOBODY" }).put("img/x", PNG, "image/png"),
      (error: Error) => error instanceof ImageStoreUnavailableError && /403/.test(error.message),
    );
    const store = storeOn(s3, { timeoutMs: 300 });
    s3.fault.refuse = true;
    await assert.rejects(() => store.get("img/x"), ImageStoreUnavailableError);
    s3.fault = { refuse: false, delayMs: 1_500 };
    const started = Date.now();
    await assert.rejects(
      () => store.put("img/x", PNG, "image/png"),
      (error: Error) =>
        error instanceof ImageStoreUnavailableError && /no answer in 300 ms/.test(error.message),
    );
    assert.ok(Date.now() - started < 1_400, "the deadline cut the request short");
    s3.fault.delayMs = 0;
    await s3.kill();
    await assert.rejects(
      () => storeOn(s3, { endpoint: s3.directUrl }).get("img/x"),
      ImageStoreUnavailableError,
    );
  },
);
