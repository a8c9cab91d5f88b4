/** Redis refuses an image over the cap in FINISH itself: nothing is written, the caller hears why. */
import assert from "node:assert/strict";
import { PermanentError } from "../../../lib/errors.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { startRedis } from "../../support/redis_server.ts";
import { newJob } from "./broker_contract_helpers.ts";

/** A PNG of `size` bytes (the magic number, then zeros). */
function png(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return bytes;
}

Deno.test({
  name:
    "FINISH refuses an image over maxImageBytes (first or extra), writing nothing, and takes one under it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startRedis();
    const broker = createRedisBroker(createTcpClient({ url: server.url }), {
      prefix: "cap:",
      maxImageBytes: 1024,
    });
    try {
      await broker.init();
      const job = newJob();
      await broker.submit(job);
      const [delivery] = await broker.claim("w", 1, { blockMs: 100 });
      await broker.start(delivery);
      const big = { type: "succeeded" as const, image: png(2048), mimeType: "image/png" };
      await assert.rejects(() => broker.finish(delivery, big), PermanentError);
      const extra = {
        ...big,
        image: png(100),
        more: [{ image: png(4096), mimeType: "image/png" }],
      };
      await assert.rejects(() => broker.finish(delivery, extra), PermanentError);
      assert.equal((await broker.get(job.id))?.status, "running", "nothing written");
      const small = { ...big, image: png(1000) };
      assert.equal(await broker.finish(delivery, small), true);
      assert.equal((await broker.get(job.id))?.status, "succeeded");
    } finally {
      await broker.close();
      await server.stop();
    }
  },
});
