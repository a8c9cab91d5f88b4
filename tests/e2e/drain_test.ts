/**
 * SIGTERM drains properly: /readyz and new requests answer 503 at once, a `Prefer: wait` submit and
 * open streams already inside are answered and ended before the relay and the broker close, nothing is
 * created and then dropped, and the process exits 0.
 */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { baseEnv } from "./e2e_helpers.ts";

const tcp = {
  name: "tcp" as const,
  redisEnv: (r: { url: string }) => Promise.resolve({ REDIS_URL: r.url }),
};

Deno.test({
  name:
    "SIGTERM: readyz and new requests answer 503, a waiting submit and open streams are answered, exit 0",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 3_000 });
    const service = await startService(
      await baseEnv(tcp, redis, xai, { DRAIN_TIMEOUT_MS: "5000", REDIS_PREFIX: "drain:" }),
    );
    try {
      const token = await signToken("dora");
      const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
      // A job whose stream stays open, and a submit that waits for its job's end.
      const first = await fetch(`${service.url}/v1/images`, {
        method: "POST",
        headers,
        body: JSON.stringify({ prompt: "streamed", id: "drain-s" }),
      });
      assert.equal(first.status, 202);
      const stream = await fetch(`${service.url}/v1/jobs/drain-s/events`, { headers });
      const reading = stream.text();
      const waiting = fetch(`${service.url}/v1/images`, {
        method: "POST",
        headers: { ...headers, Prefer: "wait=30" },
        body: JSON.stringify({ prompt: "waited", id: "drain-w" }),
      });
      // Both are inside: the waiting submit's job exists before the signal.
      for (
        let i = 0;
        i < 100 && !(await redisCommand(redis.port, ["EXISTS", "drain:job:drain-w"]));
        i++
      ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const exit = service.stop("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 100));
      // A new request on a kept-alive connection is answered 503 (a new connection may be refused).
      const ready = await fetch(`${service.url}/readyz`).then(
        async (res) => [res.status, res.headers.get("Retry-After"), await res.text()] as const,
        () => [0, null, ""] as const,
      );
      assert.ok(ready[0] === 503 || ready[0] === 0, `readyz during the drain: ${ready[0]}`);
      if (ready[0] === 503) assert.ok(Number(ready[1]) >= 1);
      const late = await fetch(`${service.url}/v1/images`, {
        method: "POST",
        headers,
        body: JSON.stringify({ prompt: "too late", id: "drain-late" }),
      }).then(async (res) => [res.status, await res.text()] as const, () => [0, ""] as const);
      assert.ok(late[0] === 503 || late[0] === 0, `a submit during the drain: ${late[0]}`);
      // The waiting submit is answered (not reset), with its job, which was kept.
      const answer = await waiting;
      assert.ok([200, 202].includes(answer.status), `the waiting submit: ${answer.status}`);
      assert.equal((await answer.json()).id, "drain-w");
      // The stream ended with the hint to come back elsewhere.
      assert.match(await reading, /retry: \d+/);
      assert.equal(await exit, 0);
      assert.equal(await redisCommand(redis.port, ["EXISTS", "drain:job:drain-w"]), 1);
      assert.equal(await redisCommand(redis.port, ["EXISTS", "drain:job:drain-late"]), 0);
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
});
