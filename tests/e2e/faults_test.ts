/** Fault tests on a real redis-server: provider faults, leases, takeovers, dead letters, cancels, drains. */
import assert from "node:assert/strict";
import { readSse, signToken, startTestService, TEST_SECRET } from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, type RedisServer, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest, type Via } from "../support/transports.ts";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

async function env(via: Via, redis: RedisServer, xai: FakeXai, extra: Record<string, string> = {}) {
  return {
    ...(await via.redisEnv(redis)),
    REDIS_PREFIX: `f${crypto.randomUUID().slice(0, 6)}:`,
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    RATE_LIMIT_PER_MINUTE: "0",
    JOB_BACKOFF_BASE_MS: "20",
    JOB_BACKOFF_MAX_MS: "100",
    ...extra,
  };
}

async function submit(
  call: (path: string, init: RequestInit) => Promise<Response>,
  token: string,
  id: string,
) {
  const res = await call("/v1/images", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: `prompt of ${id}`, id }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return await res.json();
}

/** The job's event types straight from Redis. */
async function eventTypes(redis: RedisServer, prefix: string, id: string): Promise<string[]> {
  const flat = await redisCommand(redis.port, ["HGETALL", `${prefix}job:${id}`]) as string[];
  const fields = new Map<string, string>();
  for (let i = 0; i < flat.length; i += 2) fields.set(flat[i], flat[i + 1]);
  const out: string[] = [];
  for (let seq = 1; seq <= Number(fields.get("seq") ?? 0); seq++) {
    out.push(JSON.parse(fields.get(`e${seq}`)!).type);
  }
  return out;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await fn();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`Cannot see ${what} in ${ms} ms`);
}

async function terminal(redis: RedisServer, prefix: string, id: string) {
  return await waitFor(`job ${id} end`, async () => {
    const types = await eventTypes(redis, prefix, id);
    return types.some((t) => TERMINAL.has(t)) ? types : undefined;
  });
}

transportTest(
  "provider faults are retried or reported and every job ends exactly once",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const e = await env(via, redis, xai, { JOB_MAX_ATTEMPTS: "4" });
    const service = await startTestService({ env: e });
    const token = await signToken("alice");
    const job = async (id: string) => {
      await submit(service.request, token, id);
      const types = await terminal(redis, e.REDIS_PREFIX, id);
      const res = await service.request(`/v1/jobs/${id}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      return { types, job: await res.json() };
    };
    try {
      await t.step("two 500s then success: three calls, one started, one succeeded", async () => {
        const before = xai.calls;
        xai.inject({ status: 500 }, { status: 500 });
        const { types, job: j } = await job("r500");
        assert.deepEqual(types, ["queued", "started", "started", "started", "succeeded"]);
        assert.equal(j.attempts, 3);
        assert.equal(xai.calls - before, 3);
      });
      await t.step(
        "429 with Retry-After waits at least that long before the next call",
        async () => {
          const before = xai.calls;
          xai.inject({ status: 429, retryAfter: "1" });
          const started = Date.now();
          const { types } = await job("r429");
          assert.equal(types.at(-1), "succeeded");
          assert.equal(xai.calls - before, 2);
          const [first, second] = xai.requests.slice(-2).map((r) => r.at);
          assert.ok(second - first >= 950, `waited ${second - first} ms`);
          assert.ok(Date.now() - started >= 950);
        },
      );
      await t.step("400 fails at once with the provider's message and no retry", async () => {
        const before = xai.calls;
        xai.inject({ status: 400, message: "prompt violates policy" });
        const { types, job: j } = await job("r400");
        assert.deepEqual(types, ["queued", "started", "failed"]);
        assert.equal(xai.calls - before, 1);
        assert.equal(j.error, "Error processing job");
        assert.ok(!("reason" in j), "the provider's text stays in the logs");
      });
      await t.step(
        "a provider that never recovers fails after JOB_MAX_ATTEMPTS calls",
        async () => {
          const before = xai.calls;
          xai.inject({ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }, {
            status: 500,
          });
          const { types, job: j } = await job("rnever");
          assert.equal(types.at(-1), "failed");
          assert.equal(types.filter((type) => TERMINAL.has(type)).length, 1);
          assert.equal(xai.calls - before, 4);
          assert.equal(j.attempts, 4);
          xai.inject(); // nothing left queued
        },
      );
      await t.step(
        "acknowledged entries leave the jobs stream and finished jobs expire",
        async () => {
          const pending = await redisCommand(redis.port, ["XLEN", `${e.REDIS_PREFIX}jobs`]);
          assert.equal(pending, 0);
          const ttl = await redisCommand(redis.port, [
            "TTL",
            `${e.REDIS_PREFIX}job:r400`,
          ]) as number;
          assert.ok(ttl > 0 && ttl <= 86_400, `ttl ${ttl}`);
        },
      );
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "a long provider call is never taken from a healthy worker whose lease is renewed",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 2_500 });
    const e = await env(via, redis, xai, { JOB_LEASE_MS: "1000", WORKER_CONCURRENCY: "2" });
    const a = await startTestService({ env: e });
    const b = await startTestService({ env: e });
    try {
      const token = await signToken("bob");
      await submit(a.request, token, "long-1");
      const types = await terminal(redis, e.REDIS_PREFIX, "long-1");
      assert.deepEqual(types, ["queued", "started", "succeeded"]);
      assert.equal(xai.calls, 1);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await xai.close();
      await redis.stop();
    }
  },
);

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
  "cancel during a run aborts the provider call, frees the slot, and no success follows",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 5_000 });
    const e = await env(via, redis, xai, { JOB_LEASE_MS: "1000", WORKER_CONCURRENCY: "1" });
    const service = await startTestService({ env: e });
    try {
      const token = await signToken("erin");
      const auth = { Authorization: `Bearer ${token}` };
      await submit(service.request, token, "cancel-run");
      await waitFor("the job running", async () => {
        const types = await eventTypes(redis, e.REDIS_PREFIX, "cancel-run");
        return types.includes("started") ? true : undefined;
      });
      const res = await service.request("/v1/jobs/cancel-run", { method: "DELETE", headers: auth });
      assert.equal(res.status, 202);
      assert.deepEqual(await res.json(), { id: "cancel-run", status: "canceled" });
      const again = await service.request("/v1/jobs/cancel-run", {
        method: "DELETE",
        headers: auth,
      });
      assert.equal(again.status, 409);
      await again.body?.cancel();
      // The only slot frees long before the 5 s provider call would have ended.
      await waitFor(
        "the slot freed",
        () => Promise.resolve(service.runtime.worker!.active === 0 ? true : undefined),
        3_000,
      );
      // The provider call was aborted and the job's only slot is done with it: nothing can follow.
      await waitFor(
        "the provider call aborted",
        () => Promise.resolve(xai.aborted === 1 || undefined),
      );
      assert.equal(xai.calls, 1);
      assert.deepEqual(await eventTypes(redis, e.REDIS_PREFIX, "cancel-run"), [
        "queued",
        "started",
        "canceled",
      ]);
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "an SSE client that drops and resumes with Last-Event-ID misses nothing and sees nothing twice",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 800 });
    const e = await env(via, redis, xai);
    const service = await startTestService({ env: e });
    try {
      const token = await signToken("fay");
      const auth = { Authorization: `Bearer ${token}` };
      await submit(service.request, token, "resume-1");
      const first = await service.request("/v1/jobs/resume-1/events", { headers: auth });
      const seen = await readSse(first, { limit: 2 });
      await first.body?.cancel().catch(() => {});
      assert.deepEqual(seen.map((s) => [s.id, s.event]), [["1", "queued"], ["2", "started"]]);
      const second = await service.request("/v1/jobs/resume-1/events", {
        headers: { ...auth, "Last-Event-ID": seen.at(-1)!.id! },
      });
      const rest = await readSse(second);
      assert.deepEqual(rest.map((s) => [s.id, s.event]), [["3", "succeeded"]]);
    } finally {
      await service.close();
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
