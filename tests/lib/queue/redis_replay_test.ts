/** Replays of the Redis relay feeds: a cursor the feed trimmed past, or never handed out, resets. */
import assert from "node:assert/strict";
import { redisCommand } from "../../support/redis_server.ts";
import { newJob } from "./broker_contract_helpers.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

for (const transport of ["tcp", "upstash"] as const) {
  Deno.test({
    name: `${transport}: replay answers null once the feed trimmed items after the cursor`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const fixture = await redisBrokerFixture(transport, 1);
      const { broker, prefix, server } = fixture;
      try {
        await broker.init();
        const { cursor } = await broker.tail(null, { blockMs: 0 });
        await broker.submit(newJob());
        const kept = await broker.submit(newJob());
        const read = await broker.replay(cursor, 10);
        assert.equal(read?.items.length, 2);
        // Nothing trimmed yet: a replay from the first item's id gives the second.
        const first = read!.items[0].cursor;
        assert.deepEqual((await broker.replay(first, 10))?.items.map((i) => i.jobId), [
          kept.job.id,
        ]);
        // The feed keeps only its newest item now: the first item is gone, so both cursors reset.
        const last = read!.items[1].cursor;
        await redisCommand(server.port, ["XTRIM", `${prefix}events`, "MINID", last]);
        assert.equal(await broker.replay(cursor, 10), null);
        assert.equal(await broker.replay(first, 10), null);
        // From the newest item on nothing was lost.
        assert.deepEqual(await broker.replay(last, 10), { cursor: last, items: [] });
      } finally {
        await fixture.cleanup();
      }
    },
  });
}
