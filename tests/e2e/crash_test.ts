/**
 * Crash tests on a real redis-server: a worker killed or stopped mid-job, an entry that crashed its
 * consumers, and redis-server itself killed.
 */
import assert from "node:assert/strict";
import { signToken, startTestService } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { env, eventTypes, submit, TERMINAL, terminal, waitFor } from "./faults_helpers.ts";

transportTest(
  "a worker killed with SIGKILL mid-job is taken over and the job ends exactly once",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 1_500 });
    const e = await env(via, redis, xai, { JOB_LEASE_MS: "1500", ROLE: "worker" });
    const victim = await startService(e);
    const api = await startTestService({ env: { ...e, ROLE: "api" } });
    let rescuer: Awaited<ReturnType<typeof startService>> | undefined;
    try {
      const token = await signToken("carol");
      await submit(api.request, token, "kill-1");
      await waitFor("the job running", async () => {
        const types = await eventTypes(redis, e.REDIS_PREFIX, "kill-1");
        return types.includes("started") ? true : undefined;
      });
      await victim.stop("SIGKILL");
      const killedAt = Date.now();
      rescuer = await startService(e);
      const types = await terminal(redis, e.REDIS_PREFIX, "kill-1");
      console.log(`takeover to terminal: ${Date.now() - killedAt} ms (lease 1500 ms)`);
      assert.deepEqual(types, ["queued", "started", "succeeded"]);
      const status = await redisCommand(redis.port, [
        "HGET",
        `${e.REDIS_PREFIX}job:kill-1`,
        "attempts",
      ]);
      assert.equal(status, "2");
      assert.equal(await redisCommand(redis.port, ["XLEN", `${e.REDIS_PREFIX}jobs`]), 0);
    } finally {
      await victim.stop("SIGKILL");
      await rescuer?.stop();
      await api.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "a job delivered too many times is dead-lettered with its reason and fails once",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const e = await env(via, redis, xai, {
      JOB_LEASE_MS: "1000",
      JOB_MAX_ATTEMPTS: "2",
      ROLE: "api",
    });
    const api = await startTestService({ env: e });
    let worker: Awaited<ReturnType<typeof startTestService>> | undefined;
    try {
      const token = await signToken("dan");
      await submit(api.request, token, "poison");
      const stream = `${e.REDIS_PREFIX}jobs`;
      // A consumer that crashed on it again and again: delivered, never acknowledged, retry count 9.
      const read = await redisCommand(redis.port, [
        "XREADGROUP",
        "GROUP",
        "workers",
        "crashy",
        "COUNT",
        "1",
        "STREAMS",
        stream,
        ">",
      ]) as [string, [string, string[]][]][];
      const entryId = read[0][1][0][0];
      await redisCommand(redis.port, [
        "XCLAIM",
        stream,
        "workers",
        "crashy",
        "0",
        entryId,
        "RETRYCOUNT",
        "9",
      ]);
      worker = await startTestService({ env: { ...e, ROLE: "worker" } });
      const types = await terminal(redis, e.REDIS_PREFIX, "poison");
      assert.deepEqual(types, ["queued", "failed"]);
      assert.equal(xai.calls, 0);
      const dead = await redisCommand(redis.port, [
        "XRANGE",
        `${e.REDIS_PREFIX}jobs:dead`,
        "-",
        "+",
      ]) as [
        string,
        string[],
      ][];
      assert.equal(dead.length, 1);
      assert.equal(dead[0][1][1], "poison");
      assert.match(dead[0][1][3], /Delivered 10 times/);
      assert.equal(await redisCommand(redis.port, ["XLEN", stream]), 0);
    } finally {
      await worker?.close();
      await api.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "SIGTERM drains in-flight jobs, leaves the rest to a takeover, and exits 0",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 1_000 });
    const e = await env(via, redis, xai, { JOB_LEASE_MS: "1500" });
    const token = await signToken("gus");
    try {
      await t.step("a job that fits in the drain deadline finishes before the exit", async () => {
        const service = await startService(e);
        await submit((p, i) => fetch(`${service.url}${p}`, i), token, "drain-1");
        await waitFor("the job running", async () => {
          const types = await eventTypes(redis, e.REDIS_PREFIX, "drain-1");
          return types.includes("started") ? true : undefined;
        });
        assert.equal(await service.stop("SIGTERM"), 0);
        assert.deepEqual(await eventTypes(redis, e.REDIS_PREFIX, "drain-1"), [
          "queued",
          "started",
          "succeeded",
        ]);
      });
      await t.step(
        "a job past the deadline is left pending and another worker ends it once",
        async () => {
          xai.setLatency(6_000);
          const service = await startService({ ...e, DRAIN_TIMEOUT_MS: "300" });
          await submit((p, i) => fetch(`${service.url}${p}`, i), token, "drain-2");
          await waitFor("the job running", async () => {
            const types = await eventTypes(redis, e.REDIS_PREFIX, "drain-2");
            return types.includes("started") ? true : undefined;
          });
          assert.equal(await service.stop("SIGTERM"), 0);
          const pending = await redisCommand(redis.port, [
            "XPENDING",
            `${e.REDIS_PREFIX}jobs`,
            "workers",
          ]) as [number, ...unknown[]];
          assert.equal(pending[0], 1, "its entry is left pending for a takeover");
          assert.deepEqual(await eventTypes(redis, e.REDIS_PREFIX, "drain-2"), [
            "queued",
            "started",
          ]);
          xai.setLatency(10);
          const rescuer = await startService(e);
          try {
            const types = await terminal(redis, e.REDIS_PREFIX, "drain-2");
            assert.deepEqual(types, ["queued", "started", "succeeded"]);
          } finally {
            await rescuer.stop();
          }
        },
      );
    } finally {
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "kill -9 of redis-server with appendonly loses no accepted job and doubles none",
  async (_t, via) => {
    const redis = await startRedis({ appendonly: true });
    const xai = await startFakeXai({ latencyMs: 50 });
    const e = await env(via, redis, xai, { WORKER_CONCURRENCY: "4" });
    const service = await startTestService({ env: e });
    const token = await signToken("hal");
    const accepted: string[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        if (i === 20) {
          await redis.kill("SIGKILL");
          await new Promise((resolve) => setTimeout(resolve, 300));
          await redis.restart();
        }
        const id = `aof-${i}`;
        for (let attempt = 0; attempt < 100; attempt++) {
          const res = await service.request("/v1/images", {
            method: "POST",
            headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
            body: JSON.stringify({ prompt: "durable", id }),
          });
          await res.body?.cancel();
          if (res.status === 202 || res.status === 200) {
            accepted.push(id);
            break;
          }
          assert.equal(res.status, 503);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.equal(accepted.length, 40);
      for (const id of accepted) {
        const types = await terminal(redis, e.REDIS_PREFIX, id);
        assert.equal(types.filter((type) => TERMINAL.has(type)).length, 1, `${id}: ${types}`);
        assert.equal(types.at(-1), "succeeded");
      }
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);
