/**
 * Redis that loses data or refuses a write: a redis-server without persistence restarted empty, and a
 * success that cannot be stored.
 */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { ReplyError } from "ioredis";
import { createGrokProvider } from "../../lib/provider/grok.ts";
import { PROCESSING_ERROR } from "../../lib/live/notifications.ts";
import { createRedisBroker } from "../../lib/queue/redis.ts";
import type { Broker } from "../../lib/queue/types.ts";
import { createTcpClient } from "../../lib/redis/tcp.ts";
import { createUpstashClient } from "../../lib/redis/upstash.ts";
import { ImageWorker } from "../../workers/image_worker.ts";
import { signToken, startTestService, TEST_SECRET } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { transportTest } from "../support/transports.ts";

async function waitFor(what: string, check: () => unknown, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Cannot see ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

transportTest(
  "a Redis restarted empty (no AOF) keeps running new jobs to succeeded",
  async (t, via) => {
    const redis = await startRedis({ appendonly: false });
    const xai = await startFakeXai();
    const service = await startTestService({
      env: {
        ...(await via.redisEnv(redis)),
        REDIS_PREFIX: `g${crypto.randomUUID().slice(0, 6)}:`,
        JWT_SECRET: TEST_SECRET,
        XAI_API_KEY: "xai-test-key",
        GROK_API: xai.url,
        IMAGE_HOSTS: xai.host,
      },
    });
    const token = await signToken("rey");
    const auth = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
    /** Submits until the service answers 202 (it answers 503 while Redis is away). */
    const submit = async (id: string) => {
      await waitFor(`job ${id} accepted`, async () => {
        const res = await service.request("/v1/images", {
          method: "POST",
          headers: auth,
          body: JSON.stringify({ prompt: `prompt of ${id}`, id }),
        });
        await res.body?.cancel();
        if (res.status !== 503) assert.equal(res.status, 202);
        return res.status === 202;
      });
    };
    const status = async (id: string) => {
      const res = await service.request(`/v1/jobs/${id}`, { headers: auth });
      return res.ok ? (await res.json()).status : `HTTP ${res.status}`;
    };
    try {
      await t.step("a job before the loss succeeds", async () => {
        await submit("before-loss");
        await waitFor(
          "before-loss succeeded",
          async () => await status("before-loss") === "succeeded",
        );
      });
      await t.step("after SIGKILL and an empty restart, a new job succeeds", async () => {
        await redis.kill("SIGKILL");
        await redis.restart();
        assert.equal(await redisCommand(redis.port, ["DBSIZE"]), 0, "the restart lost everything");
        await submit("after-loss");
        await waitFor(
          "after-loss succeeded",
          async () => await status("after-loss") === "succeeded",
        );
        assert.equal(xai.callsByPrompt.get("prompt of after-loss"), 1);
      });
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "a success Redis refuses to store (OOM) fails the job with the user-facing message and frees the slot",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const env = await via.redisEnv(redis);
    const client = env.REDIS_URL ? createTcpClient({ url: env.REDIS_URL }) : createUpstashClient({
      url: env.UPSTASH_REDIS_REST_URL,
      token: env.UPSTASH_REDIS_REST_TOKEN,
    });
    const real = createRedisBroker(client, {
      prefix: "oom:",
      kind: via.name === "tcp" ? "redis" : "upstash",
    });
    await real.init();
    // The first success this worker stores gets Redis's OOM reply, as under `maxmemory` with a large image.
    let refusals = 1;
    const broker = new Proxy(real, {
      get(target, name) {
        if (name === "finish") {
          return (...args: Parameters<Broker["finish"]>) =>
            args[1].type === "succeeded" && refusals-- > 0
              ? Promise.reject(
                new ReplyError("OOM command not allowed when used memory > 'maxmemory'."),
              )
              : target.finish(...args);
        }
        const value = Reflect.get(target, name, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const ended: string[] = [];
    const worker = new ImageWorker({
      broker,
      provider: createGrokProvider({
        apiBase: xai.url,
        apiKey: "xai-test-key",
        model: "grok-test",
        responseFormat: "b64_json",
        imageHosts: [xai.host],
      }),
      verifyToken: () => Promise.reject(new Error("Cannot verify: no seed entries here")),
      log: getLogger(["imagejobs", "test"]),
      concurrency: 1,
      leaseMs: 1_000,
      maxAttempts: 3,
      onFinished: (status) => void ended.push(status),
    });
    worker.start();
    try {
      await real.submit({ id: "oom-1", owner: "olga", prompt: "a huge panorama" });
      await waitFor("oom-1 ended", async () => (await real.get("oom-1"))?.status === "failed");
      const job = await real.get("oom-1", { image: true });
      assert.equal(job?.error, PROCESSING_ERROR);
      assert.equal(job?.image, undefined);
      const events = await real.events("oom-1");
      assert.deepEqual(events.map((e) => e.notification.type), ["queued", "started", "failed"]);
      assert.deepEqual(Object.keys(events[2].notification).sort(), [
        "at",
        "error",
        "id",
        "success",
        "type",
      ]);
      const stored = await redisCommand(redis.port, ["HGET", "oom:job:oom-1", "image"]);
      assert.ok(!stored, "no image bytes kept in Redis");
      await waitFor("the slot freed", () => worker.active === 0);
      // The only slot takes the next job at once, and that one is stored.
      await real.submit({ id: "oom-2", owner: "olga", prompt: "a small one" });
      await waitFor(
        "oom-2 succeeded",
        async () => (await real.get("oom-2"))?.status === "succeeded",
      );
      // The worker counts a job's end once its write answered (the status may be seen a moment before).
      await waitFor("both ends counted", () => ended.length >= 2);
      assert.deepEqual(ended, ["failed", "succeeded"]);
      assert.equal(xai.calls, 2);
    } finally {
      await worker.close({ drainMs: 1_000 });
      await real.close();
      await xai.close();
      await redis.stop();
    }
  },
);
