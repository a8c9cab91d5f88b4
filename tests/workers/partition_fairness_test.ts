/** A worker over three partitions claims from all of them: a backlog in one does not starve the others. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { partitionOf } from "../../lib/queue/partitions.ts";
import { ImageWorker } from "../../workers/image_worker.ts";
import { redisBrokerFixture } from "../lib/queue/redis_fixture.ts";

const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";

/** `count` ids of partition `p` of 3, starting with `stem`. */
function idsIn(p: number, count: number, stem: string): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) {
    if (partitionOf(`${stem}-${i}`, 3) === p) ids.push(`${stem}-${i}`);
  }
  return ids;
}

for (const concurrency of [1, 4]) {
  Deno.test({
    name:
      `a backlog in one partition does not hold back the others' jobs (concurrency ${concurrency})`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const { broker, cleanup } = await redisBrokerFixture("tcp", 3);
      const backlog = idsIn(0, 40, "backlog");
      const others = [...idsIn(1, 2, "one"), ...idsIn(2, 2, "two")];
      const order: string[] = [];
      const done = Promise.withResolvers<void>();
      const worker = new ImageWorker({
        broker,
        provider: {
          name: "recording",
          async generate(request) {
            order.push(request.prompt);
            await new Promise((resolve) => setTimeout(resolve, 1));
            return { base64: PNG, mimeType: "image/png" };
          },
        },
        verifyToken: (token) => Promise.resolve({ sub: token }),
        log: getLogger(["imagejobs", "test"]),
        concurrency,
        leaseMs: 60_000,
        maxAttempts: 3,
        blockMs: 200,
        onFinished: () => {
          if (order.length === backlog.length + others.length) done.resolve();
        },
      });
      try {
        await broker.init();
        // The backlog is queued first, all of it in partition 0; the others come after it.
        for (const id of [...backlog, ...others]) {
          await broker.submit({ id, owner: "ann", prompt: id });
        }
        worker.start();
        await done.promise;
        const positions = others.map((id) => order.indexOf(id));
        // Round robin over the partitions runs them among the first few; oldest-first would run
        // them after the whole backlog (positions 40 to 43).
        assert.ok(
          positions.every((at) => at >= 0 && at < 4 * 3 + concurrency),
          `positions ${positions}`,
        );
        assert.equal(new Set(order).size, order.length, "each job ran once");
      } finally {
        await worker.close({ drainMs: 0 });
        await cleanup();
      }
    },
  });
}
