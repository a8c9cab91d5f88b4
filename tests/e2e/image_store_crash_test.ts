/**
 * A worker process killed between its image write and the job's terminal write: the object it wrote is
 * in the store, the job is taken over, and the run that ends it deletes the crashed run's object.
 */
import assert from "node:assert/strict";
import { signToken, startTestService } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { S3_KEY, startS3 } from "../support/s3_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { env, submit, terminal, waitFor } from "./faults_helpers.ts";

transportTest(
  "a worker killed after its image write is taken over and the crashed run's object is deleted",
  async (_t, via) => {
    const [redis, s3, xai] = await Promise.all([startRedis(), startS3(), startFakeXai()]);
    const e = await env(via, redis, xai, {
      JOB_LEASE_MS: "1500",
      ROLE: "worker",
      IMAGE_STORE_URL: `s3://${s3.bucket}/crash`,
      S3_ENDPOINT: s3.url,
      AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
    });
    // The first run's PUT reaches the store, and its answer never comes back in time.
    s3.fault.holdPutAnswerMs = 60_000;
    const victim = await startService(e);
    const api = await startTestService({ env: { ...e, ROLE: "api" } });
    let rescuer: Awaited<ReturnType<typeof startService>> | undefined;
    try {
      const token = await signToken("carol");
      await submit(api.request, token, "crash-1");
      await waitFor("the first run's object in the store", async () => {
        const keys = await s3.keys("crash/crash-1/");
        return keys.includes("crash/crash-1/1/0.jpg") || keys.includes("crash/crash-1/1/0.png")
          ? true
          : undefined;
      });
      await victim.stop("SIGKILL");
      s3.fault.holdPutAnswerMs = 0;
      rescuer = await startService(e);
      const types = await terminal(redis, e.REDIS_PREFIX, "crash-1");
      assert.deepEqual(types, ["queued", "started", "succeeded"]);
      const key = `${e.REDIS_PREFIX}job:crash-1`;
      assert.equal(await redisCommand(redis.port, ["HGET", key, "attempts"]), "2");
      const recorded = String(await redisCommand(redis.port, ["HGET", key, "objs"]));
      assert.match(recorded, /^crash\/crash-1\/2\/0\.(jpg|png)$/);
      // The rescuer deleted the crashed run's object after ending the job.
      await waitFor("only the second run's object", async () => {
        const keys = await s3.keys("crash/crash-1/");
        return keys.length === 1 && keys[0] === recorded ? true : undefined;
      });
      const image = await api.request("/v1/jobs/crash-1/image", {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(image.status, 200);
      await image.body?.cancel();
    } finally {
      await victim.stop("SIGKILL");
      await rescuer?.stop();
      await api.close();
      await xai.close();
      await Promise.all([redis.stop(), s3.stop()]);
    }
  },
);
