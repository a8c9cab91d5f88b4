/**
 * The image store's faults as the worker meets them, against a real s3rver and redis-server: a store
 * that is down or slow makes the job retry (as a provider 5xx does) and never succeed without its image.
 */
import assert from "node:assert/strict";
import {
  countingProvider,
  startTestService,
  submitJob,
  until,
  waitForStatus,
} from "../support/app.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { S3_KEY, type S3Server, startS3 } from "../support/s3_server.ts";

const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";

function storeEnv(redis: RedisServer, s3: S3Server, endpoint: string): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    REDIS_PREFIX: `sf${crypto.randomUUID().slice(0, 8)}:`,
    IMAGE_STORE_URL: `s3://${s3.bucket}/jobs`,
    S3_ENDPOINT: endpoint,
    AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
    IMAGE_STORE_TIMEOUT_MS: "300",
  };
}

function faultTest(
  name: string,
  fn: (redis: RedisServer, s3: S3Server) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const [redis, s3] = await Promise.all([startRedis(), startS3()]);
      try {
        await fn(redis, s3);
      } finally {
        await Promise.all([redis.stop(), s3.stop()]);
      }
    },
  });
}

faultTest(
  "A store stopped while a job runs makes it retry; once it is back the job succeeds with its image",
  async (redis, s3) => {
    let release = () => {};
    const provider = countingProvider({ gate: new Promise<void>((r) => release = r) });
    const service = await startTestService({
      env: { ...storeEnv(redis, s3, s3.directUrl), JOB_MAX_ATTEMPTS: "100" },
      provider,
      workerOptions: { backoffBaseMs: 50, backoffMaxMs: 100 },
    });
    try {
      const token = await service.token("alice");
      const { body } = await submitJob(service, token);
      await until(() => provider.calls === 1, "the job running (its provider call held)");
      await s3.kill();
      release();
      await until(() => provider.calls >= 3, "three provider calls while the store is down");
      const meanwhile = await waitForStatus(service, token, body.id, ["queued", "running"]);
      assert.equal(meanwhile.result, undefined, "no success without the image");
      await s3.restart();
      const done = await waitForStatus(service, token, body.id, ["succeeded"], {
        timeoutMs: 15_000,
      });
      assert.ok(done.attempts >= 3, `attempts ${done.attempts}`);
      assert.equal(done.result.image, `data:image/png;base64,${PNG_BASE64}`);
      const image = await service.request(`/v1/jobs/${body.id}/image`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(image.status, 200);
      assert.equal(new Uint8Array(await image.arrayBuffer()).toBase64(), PNG_BASE64);
      // Only the successful run's object exists, under that run's attempt.
      assert.deepEqual(await s3.keys(`jobs/${body.id}/`), [
        `jobs/${body.id}/${done.attempts}/0.png`,
      ]);
    } finally {
      await service.close();
    }
  },
);

faultTest(
  "A store that stays down fails the job after JOB_MAX_ATTEMPTS, without an image",
  async (redis, s3) => {
    const provider = countingProvider();
    const service = await startTestService({
      env: { ...storeEnv(redis, s3, s3.directUrl), JOB_MAX_ATTEMPTS: "3" },
      provider,
    });
    try {
      await s3.kill();
      const token = await service.token("alice");
      const { body } = await submitJob(service, token);
      const failed = await waitForStatus(service, token, body.id, ["failed", "succeeded"]);
      assert.equal(failed.status, "failed");
      assert.equal(failed.error, "Error processing job");
      assert.equal(provider.calls, 3, "each attempt counted, as a provider 5xx");
      const image = await service.request(`/v1/jobs/${body.id}/image`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(image.status, 404);
      await image.body?.cancel();
    } finally {
      await service.close();
    }
  },
);

faultTest(
  "A slow store times out and the job retries until the store answers in time",
  async (redis, s3) => {
    const provider = countingProvider();
    const service = await startTestService({
      env: { ...storeEnv(redis, s3, s3.url), JOB_MAX_ATTEMPTS: "100" },
      provider,
      workerOptions: { backoffBaseMs: 50, backoffMaxMs: 100 },
    });
    try {
      s3.fault.delayMs = 1_000;
      const token = await service.token("alice");
      const { body } = await submitJob(service, token);
      await until(() => provider.calls >= 2, "a retry after the store timed out");
      assert.equal(
        (await waitForStatus(service, token, body.id, ["queued", "running"])).result,
        undefined,
      );
      s3.fault.delayMs = 0;
      const done = await waitForStatus(service, token, body.id, ["succeeded"], {
        timeoutMs: 15_000,
      });
      assert.equal(done.result.image, `data:image/png;base64,${PNG_BASE64}`);
      assert.ok(s3.requests.filter((r) => r.method === "PUT").length >= 2);
      // The job points at its successful run's object; a write that timed out may still land after
      // that run deleted the earlier ones (the bucket's lifecycle rule removes it), never a later run's.
      const keys = await s3.keys(`jobs/${body.id}/`);
      const kept = `jobs/${body.id}/${done.attempts}/0.png`;
      assert.ok(keys.includes(kept), keys.join(", "));
      for (const key of keys) {
        assert.ok(Number(key.split("/")[2]) <= done.attempts, `${key} is of an earlier run`);
      }
    } finally {
      await service.close();
    }
  },
);

faultTest(
  "Reading an image while the store is down answers 503 with Retry-After, then the image",
  async (redis, s3) => {
    const base = storeEnv(redis, s3, s3.directUrl);
    const worker = await startTestService({
      env: { ...base, ROLE: "worker" },
      provider: countingProvider(),
    });
    const api = await startTestService({ env: { ...base, ROLE: "api" } });
    try {
      const token = await api.token("alice");
      const { body } = await submitJob(api, token);
      // Polled without the image (a GET would read it into the API process's cache).
      for (let status = ""; status !== "succeeded";) {
        status = (await api.runtime.deps.broker.get(body.id))?.status ?? "";
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await s3.kill();
      // The API process never read this image: its cache is cold.
      const down = await api.request(`/v1/jobs/${body.id}/image`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(down.status, 503);
      assert.ok(Number(down.headers.get("Retry-After")) >= 1);
      assert.equal((await down.json()).error.code, "unavailable");
      await s3.restart();
      const up = await api.request(`/v1/jobs/${body.id}/image`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(up.status, 200);
      assert.equal(new Uint8Array(await up.arrayBuffer()).toBase64(), PNG_BASE64);
    } finally {
      await api.close();
      await worker.close();
    }
  },
);
