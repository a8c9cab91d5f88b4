/** The owner's job index stays bounded: trimmed of expired ids, and to its newest ids, as it grows. */
import assert from "node:assert/strict";
import { redisCommand } from "../../support/redis_server.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";
import { INDEX_MAX } from "../../../lib/queue/scripts_submit.ts";

for (const partitions of [1, 3]) {
  Deno.test({
    name:
      `the owner's index drops expired ids and keeps its newest ${INDEX_MAX} (${partitions} partition(s))`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const fixture = await redisBrokerFixture("tcp", partitions);
      const { broker, prefix, server } = fixture;
      const key = partitions === 1 ? `${prefix}owner:ivy:jobs` : `${prefix}{o:ivy}jobs`;
      try {
        await broker.init();
        // A year-old id, and more ids than the cap, each newer than the last (but older than now).
        const now = Date.now();
        await redisCommand(server.port, [
          "EVAL",
          "for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], ARGV[2] + i, 'old-' .. i) end",
          "1",
          key,
          String(INDEX_MAX + 5),
          String(now - 3_600_000),
        ]);
        await redisCommand(server.port, ["ZADD", key, String(now - 365 * 86_400_000), "ancient"]);
        await broker.submit({ id: "fresh-1", owner: "ivy", prompt: "p" });
        assert.equal(await redisCommand(server.port, ["ZSCORE", key, "ancient"]), null);
        assert.equal(await redisCommand(server.port, ["ZCARD", key]), INDEX_MAX);
        assert.notEqual(await redisCommand(server.port, ["ZSCORE", key, "fresh-1"]), null);
        assert.equal(await redisCommand(server.port, ["ZSCORE", key, "old-1"]), null);
      } finally {
        await fixture.cleanup();
      }
    },
  });
}
