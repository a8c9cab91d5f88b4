/** The intake mover copies each entry once, even when its copy runs again (a crash, a resend). */
import assert from "node:assert/strict";
import { copyIntake } from "../../../lib/queue/redis_intake.ts";
import { RedisContext } from "../../../lib/queue/redis_context.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { redisCommand, startRedis } from "../../support/redis_server.ts";

Deno.test({
  name: "an intake entry copied twice lands on its partition's stream once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startRedis();
    const client = createTcpClient({ url: server.url });
    const prefix = "intake:";
    const ctx = new RedisContext(client, {
      prefix,
      ttlSec: 60,
      feedRetentionMs: 60_000,
      partitions: 3,
      multiSlotPipelines: false,
    });
    try {
      const entries = [
        ["1-1", ["Id", "seed-a", "Token", "t", "Prompt", "a fox"]],
        ["1-2", ["Id", "seed-b", "Token", "t", "Prompt", "a cat"]],
      ];
      assert.deepEqual(await copyIntake(ctx, entries), ["1-1", "1-2"]);
      // The same copy again: a mover that died before acknowledging, or a resent script.
      await copyIntake(ctx, entries);
      await copyIntake(ctx, [entries[1]]);
      let total = 0;
      for (let p = 0; p < 3; p++) {
        total += Number(await redisCommand(server.port, ["XLEN", ctx.keys.jobs(p)]));
      }
      assert.equal(total, 2);
    } finally {
      await client.close();
      await server.stop();
    }
  },
});
