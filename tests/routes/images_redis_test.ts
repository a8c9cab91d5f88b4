/** POST /v1/images on the Redis broker: a client's id (body or Idempotency-Key) is never overwritten. */
import assert from "node:assert/strict";
import { startRedis } from "../support/redis_server.ts";
import { startTestService, submitJob } from "../support/app.ts";

Deno.test({
  name:
    "POST /v1/images on Redis answers a client's id again with its job, and 409 to another owner",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const redis = await startRedis();
    const service = await startTestService({
      env: { REDIS_URL: redis.url, REDIS_PREFIX: `t${crypto.randomUUID().slice(0, 8)}:` },
    });
    try {
      const alice = await service.token("alice");
      const bob = await service.token("bob");
      await t.step("an id in the body", async () => {
        const first = await submitJob(service, alice, { prompt: "a fox", id: "client-id-1" });
        assert.equal(first.response.status, 202);
        const again = await submitJob(service, alice, { prompt: "another", id: "client-id-1" });
        assert.equal(again.response.status, 200);
        assert.equal(again.body.created_at, first.body.created_at);
        const other = await submitJob(service, bob, { prompt: "mine now", id: "client-id-1" });
        assert.equal(other.response.status, 409);
        const job = await service.request("/v1/jobs/client-id-1", {
          headers: { Authorization: `Bearer ${alice}` },
        });
        assert.equal((await job.json()).prompt, "a fox");
      });
      await t.step("an Idempotency-Key", async () => {
        const key = { "Idempotency-Key": "client-key-1" };
        const first = await submitJob(service, alice, { prompt: "a fox" }, key);
        assert.equal(first.response.status, 202);
        const again = await submitJob(service, alice, { prompt: "a fox" }, key);
        assert.equal(again.response.status, 200);
        assert.equal(again.body.id, first.body.id);
      });
      await t.step("no id: a new job each time", async () => {
        const a = await submitJob(service, alice, { prompt: "a fox" });
        const b = await submitJob(service, alice, { prompt: "a fox" });
        assert.deepEqual([a.response.status, b.response.status], [202, 202]);
        assert.notEqual(a.body.id, b.body.id);
      });
    } finally {
      await service.close();
      await redis.stop();
    }
  },
});
