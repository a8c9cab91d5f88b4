/** End to end on Redis: one owner's hanging webhook target does not hold another owner's deliveries. */
import assert from "node:assert/strict";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { SECRET, startReceiver } from "../lib/webhooks/helpers.ts";
import { submit } from "./e2e_helpers.ts";

/** Long enough for a loaded machine; far shorter than the 10 s a hanging delivery is given. */
const WITHIN_MS = 8_000;

Deno.test({
  name: "a service on Redis delivers alice's webhooks while mallory's target hangs on 40 of them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    const hang = startReceiver(async () => {
      await released;
      return new Response("late");
    });
    const ok = startReceiver();
    try {
      const service = await startService({
        REDIS_URL: redis.url,
        REDIS_PREFIX: "wh-owners:",
        JWT_SECRET: TEST_SECRET,
        RATE_LIMIT_PER_MINUTE: "0",
        WEBHOOK_SECRET: SECRET,
        WEBHOOK_HOSTS: `127.0.0.1:${hang.port},127.0.0.1:${ok.port}`,
      });
      try {
        const mallory = await signToken("mallory");
        for (let i = 0; i < 40; i++) {
          const { status } = await submit(service.url, mallory, {
            prompt: `hang ${i}`,
            webhook: hang.url(),
          });
          assert.equal(status, 202);
        }
        await hang.requests.next("mallory's first delivery", WITHIN_MS);
        const alice = await signToken("alice");
        for (let i = 0; i < 5; i++) {
          const { status } = await submit(service.url, alice, {
            prompt: `ok ${i}`,
            webhook: ok.url(),
          });
          assert.equal(status, 202);
        }
        for (let i = 0; i < 5; i++) await ok.requests.next(`alice's delivery ${i}`, WITHIN_MS);
        // Every one of mallory's connections is still open, unanswered: at most its 8 slots.
        const held = hang.requests.all.length;
        assert.ok(held >= 1 && held <= 8, `mallory's target holds ${held} connections`);
      } finally {
        release();
        await service.stop("SIGTERM");
      }
    } finally {
      release();
      await hang.close();
      await ok.close();
      await redis.stop();
    }
  },
});
