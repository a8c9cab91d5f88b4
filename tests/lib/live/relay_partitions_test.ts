/** The relay over three partitions tails every partition's feed, over TCP (a reader per feed) and REST (one poll). */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { StoredEvent } from "../../../lib/live/notifications.ts";
import { Relay } from "../../../lib/live/relay.ts";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import { redisBrokerFixture } from "../queue/redis_fixture.ts";

const log = getLogger(["imagejobs", "test"]);
const SUCCESS = {
  type: "succeeded",
  image: Uint8Array.fromBase64(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC",
  ),
  mimeType: "image/png",
} as const;

for (const transport of ["tcp", "upstash"] as const) {
  Deno.test({
    name: `the relay delivers the events of jobs in every partition (${transport})`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const { broker, cleanup } = await redisBrokerFixture(transport, 3);
      const relay = new Relay({ broker, log, blockMs: 200, idleMaxMs: 100, resyncMs: 60_000 });
      const ids = ["j0", "j1", "j3"];
      assert.deepEqual(ids.map((id) => partitionOf(id, 3)), [0, 1, 2]);
      try {
        await broker.init();
        await relay.start();
        const seen = new Map<string, StoredEvent[]>(ids.map((id) => [id, []]));
        const ended = ids.map(() => Promise.withResolvers<string>());
        for (const [i, id] of ids.entries()) {
          await broker.submit({ id, owner: "ann", prompt: "a fox" });
          await relay.subscribe(id, {
            event: (e) => seen.get(id)!.push(e),
            done: ended[i].resolve,
          });
        }
        const deliveries = [];
        while (deliveries.length < ids.length) {
          deliveries.push(...await broker.claim("w", 3, { blockMs: 200 }));
        }
        for (const delivery of deliveries) await broker.start(delivery);
        for (const delivery of deliveries) await broker.finish(delivery, SUCCESS);
        // A generous bound, so that a feed nobody tails fails the test instead of hanging it.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<string>((resolve) => timer = setTimeout(resolve, 10_000, "late"));
        const ends = await Promise.all(ended.map((e) => Promise.race([e.promise, late])));
        clearTimeout(timer);
        assert.deepEqual(ends, ids.map(() => "terminal"));
        for (const id of ids) {
          assert.deepEqual(seen.get(id)!.map((e) => e.notification.type), [
            "queued",
            "started",
            "succeeded",
          ]);
        }
      } finally {
        await relay.close();
        await cleanup();
      }
    },
  });
}
