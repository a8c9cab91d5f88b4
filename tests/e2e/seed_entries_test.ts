/** End to end: entries other services add to the jobs stream with the seed's fields. */
import assert from "node:assert/strict";
import { SESSION_EXPIRED } from "../../lib/live/notifications.ts";
import { readSse, signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { baseEnv, submit, waitForStatus } from "./e2e_helpers.ts";

transportTest(
  "entries other services add to the jobs stream are verified and processed like the seed",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    // Over Upstash, entries added without a wake-up wait for the safety poll: a deployment that
    // relies on them sets it short (README, "A month on Upstash").
    const service = await startService(
      await baseEnv(via, redis, xai, { UPSTASH_SAFETY_POLL_MS: "500" }),
    );
    const carol = await signToken("carol");
    /** Adds a job the way another service does: XADD with the seed's fields. */
    const addSeedEntry = (Token: string, Prompt: string, Id: string) =>
      redisCommand(redis.port, [
        "XADD",
        "e2e:jobs",
        "*",
        "Token",
        Token,
        "Prompt",
        Prompt,
        "Id",
        Id,
      ]);
    try {
      await t.step("a valid token runs the job for its subject", async () => {
        await addSeedEntry(carol, "from another service", "seed-ok");
        const job = await waitForStatus(service.url, carol, "seed-ok", ["succeeded", "failed"]);
        assert.equal(job.status, "succeeded");
        assert.equal(job.prompt, "from another service");
        assert.match(job.result.image, /^data:image\/png;base64,/);
      });
      await t.step(
        "an expired token fails with the seed's message and never calls xAI",
        async () => {
          const expired = await signToken("carol", {
            expiresIn: Math.floor(Date.now() / 1000) - 3600,
          });
          const before = xai.calls;
          await addSeedEntry(expired, "too late", "seed-expired");
          const job = await waitForStatus(service.url, carol, "seed-expired", [
            "failed",
            "succeeded",
          ]);
          assert.equal(job.status, "failed");
          assert.equal(job.error, SESSION_EXPIRED);
          const res = await fetch(`${service.url}/v1/jobs/seed-expired/events`, {
            headers: { Authorization: `Bearer ${carol}` },
          });
          const events = await readSse(res);
          const last = JSON.parse(events.at(-1)!.data);
          assert.deepEqual([last.type, last.success, last.error], [
            "failed",
            false,
            SESSION_EXPIRED,
          ]);
          assert.equal(xai.calls, before);
        },
      );
      await t.step("an entry never overwrites an existing job with the same id", async () => {
        const dave = await signToken("dave");
        await addSeedEntry(dave, "hijack", "seed-ok");
        await addSeedEntry(carol, "marker", "seed-marker");
        await waitForStatus(service.url, carol, "seed-marker", ["succeeded"]);
        const job = await waitForStatus(service.url, carol, "seed-ok", ["succeeded"]);
        assert.equal(job.prompt, "from another service");
        const res = await fetch(`${service.url}/v1/jobs/seed-ok`, {
          headers: { Authorization: `Bearer ${dave}` },
        });
        assert.equal(res.status, 404);
        await res.body?.cancel();
      });
      await t.step("no bearer token is stored in Redis", async () => {
        const token = await signToken("erin");
        await submit(service.url, token, { prompt: "secret check", id: "tok-check" });
        await waitForStatus(service.url, token, "tok-check", ["succeeded"]);
        const keys = await redisCommand(redis.port, ["KEYS", "*"]) as string[];
        for (const key of keys) {
          const type = await redisCommand(redis.port, ["TYPE", key]);
          const dump = type === "hash"
            ? await redisCommand(redis.port, ["HGETALL", key])
            : type === "string"
            ? await redisCommand(redis.port, ["GET", key])
            : type === "stream"
            ? await redisCommand(redis.port, ["XRANGE", key, "-", "+"])
            : [];
          assert.ok(!JSON.stringify(dump).includes(token), `token found in ${key}`);
        }
      });
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
);
