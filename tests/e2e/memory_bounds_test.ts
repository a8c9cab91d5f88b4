/** Redis memory bounds: an evicting maxmemory-policy is reported loudly at start; a full Redis is a 503. */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { baseEnv, submit } from "./e2e_helpers.ts";

const tcp = {
  name: "tcp" as const,
  redisEnv: (r: { url: string }) => Promise.resolve({ REDIS_URL: r.url }),
};

Deno.test({
  name:
    "a maxmemory-policy that can evict the service's keys is reported at start; OOM answers 503",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    const service = await startService(await baseEnv(tcp, redis, xai));
    try {
      assert.match(service.output(), /"level":"ERROR".*maxmemory-policy is \\"allkeys-lru\\"/);
      // Redis full: a submit is refused with 503 and Retry-After, not a 500.
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "1"]);
      const { status, body, headers } = await submit(service.url, await signToken("full"), {
        prompt: "no room",
      });
      assert.equal(status, 503);
      assert.equal(body.error.code, "unavailable");
      assert.ok(Number(headers.get("Retry-After")) >= 1);
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "0"]);
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
    const quiet = await startRedis();
    const xai2 = await startFakeXai();
    const calm = await startService(await baseEnv(tcp, quiet, xai2));
    try {
      assert.doesNotMatch(calm.output(), /maxmemory-policy/, "noeviction says nothing");
    } finally {
      await calm.stop();
      await xai2.close();
      await quiet.stop();
    }
  },
});
