/** IMAGE_STORE_URL and its companions are checked at start, naming the variable. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../lib/config.ts";
import { ImageCache } from "../../../lib/images/image_cache.ts";
import { createMemoryImageStore } from "../../../lib/images/memory_store.ts";
import { parseStoreUrl } from "../../../lib/images/store.ts";

const BASE = { JWT_SECRET: "x".repeat(32) };
const KEYS = { AWS_ACCESS_KEY_ID: "id", AWS_SECRET_ACCESS_KEY: "secret" };

Deno.test("IMAGE_STORE_URL names a bucket and an optional prefix", () => {
  assert.deepEqual(parseStoreUrl("s3://my-bucket"), {
    kind: "s3",
    bucket: "my-bucket",
    prefix: "",
  });
  assert.deepEqual(parseStoreUrl("s3://b.example/a/b/"), {
    kind: "s3",
    bucket: "b.example",
    prefix: "a/b/",
  });
  assert.deepEqual(parseStoreUrl("memory://"), { kind: "memory", prefix: "" });
  for (
    const bad of ["s3://", "s3://B", "s3://b/../x", "s3://bb/a//b", "http://bb", "s3://bb/a b"]
  ) {
    assert.equal(parseStoreUrl(bad), null, bad);
  }
});

Deno.test("loadConfig refuses a bad store URL, a store without keys, and memory:// with Redis", async (t) => {
  await t.step("a bad URL names IMAGE_STORE_URL", () => {
    assert.throws(
      () => loadConfig({ ...BASE, ...KEYS, IMAGE_STORE_URL: "s3://" }),
      (error: Error) => error instanceof ConfigError && /IMAGE_STORE_URL/.test(error.message),
    );
  });
  await t.step("s3:// needs both keys", () => {
    assert.throws(
      () => loadConfig({ ...BASE, IMAGE_STORE_URL: "s3://bucket", AWS_ACCESS_KEY_ID: "id" }),
      /AWS_SECRET_ACCESS_KEY/,
    );
  });
  await t.step("memory:// is for the embedded broker only", () => {
    assert.throws(
      () => loadConfig({ ...BASE, REDIS_URL: "redis://127.0.0.1:1", IMAGE_STORE_URL: "memory://" }),
      /embedded broker/,
    );
  });
  await t.step(
    "over Upstash, a store lifts the image cap that Upstash's request limit sets",
    () => {
      const upstash = {
        ...BASE,
        UPSTASH_REDIS_REST_URL: "https://u.example",
        UPSTASH_REDIS_REST_TOKEN: "t",
      };
      const big = { DOWNLOAD_MAX_BYTES: String(20 * 1024 * 1024) };
      assert.throws(() => loadConfig({ ...upstash, ...big }), /DOWNLOAD_MAX_BYTES/);
      const stored = { ...upstash, ...KEYS, IMAGE_STORE_URL: "s3://bucket" };
      assert.equal(loadConfig({ ...stored, ...big }).DOWNLOAD_MAX_BYTES, 20 * 1024 * 1024);
      assert.equal(loadConfig(stored).DOWNLOAD_MAX_BYTES, 20 * 1024 * 1024);
    },
  );
  await t.step("defaults: region auto, bytes served, a 10 s deadline", () => {
    const config = loadConfig({ ...BASE, ...KEYS, IMAGE_STORE_URL: "s3://bucket/p" });
    assert.equal(config.S3_REGION, "auto");
    assert.equal(config.IMAGE_STORE_REDIRECT, "0");
    assert.equal(config.IMAGE_STORE_TIMEOUT_MS, 10_000);
    assert.equal(loadConfig(BASE).IMAGE_STORE_URL, undefined);
  });
});

Deno.test("The image cache reads an object once for concurrent callers and stays within its bytes", async () => {
  const cache = new ImageCache({ maxBytes: 10 });
  let reads = 0;
  const read = async (key: string) => {
    reads++;
    await new Promise((resolve) => setTimeout(resolve, 5));
    return key === "gone" ? null : new TextEncoder().encode(key.padEnd(6, "."));
  };
  const got = await Promise.all([cache.get("a", read), cache.get("a", read), cache.get("a", read)]);
  assert.deepEqual(got, Array(3).fill(btoa("a.....")));
  assert.equal(reads, 1);
  assert.equal(await cache.get("gone", read), null);
  await cache.get("b", read); // 8 + 8 base64 characters: over 10, "a" goes
  assert.equal(cache.bytes, 8);
  await cache.get("a", read);
  assert.equal(reads, 4, "the evicted object is read again");
  assert.throws(() => new ImageCache({ maxBytes: -1 }), RangeError);
});

Deno.test("The in-memory store lists by prefix and forgets an object once its time is up", async () => {
  let now = 0;
  const store = createMemoryImageStore({ prefix: "p/", ttlMs: 1_000, now: () => now });
  await store.put("p/a/1/0.png", new Uint8Array([1]), "image/png");
  now = 500;
  await store.put("p/b/1/0.png", new Uint8Array([2]), "image/png");
  assert.deepEqual(await store.list("p/a/"), ["p/a/1/0.png"]);
  now = 1_000;
  assert.equal(await store.get("p/a/1/0.png"), null, "expired");
  assert.deepEqual(await store.get("p/b/1/0.png"), new Uint8Array([2]));
  await store.delete(["p/b/1/0.png", "p/none"]);
  assert.deepEqual(await store.list("p/"), []);
});
