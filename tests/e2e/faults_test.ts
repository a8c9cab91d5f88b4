/** Fault tests on a real redis-server: provider faults, long calls, cancels, resumed SSE. */
import assert from "node:assert/strict";
import { readSse, signToken, startTestService } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { transportTest } from "../support/transports.ts";
import { env, eventTypes, submit, TERMINAL, terminal, waitFor } from "./faults_helpers.ts";

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
      await t.step(
        "429s never count as attempts: more of them than JOB_MAX_ATTEMPTS and the job still succeeds",
        async () => {
          const before = xai.calls;
          const busy = { status: 429 as const, retryAfter: "0" };
          xai.inject(busy, busy, busy, busy, busy, busy);
          const { types, job: j } = await job("r429x6");
          assert.equal(types.at(-1), "succeeded");
          assert.equal(types.filter((type) => TERMINAL.has(type)).length, 1);
          assert.equal(xai.calls - before, 7);
          assert.equal(j.attempts, 1);
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
      assert.deepEqual(seen.map((s) => s.event), ["queued", "started"]);
      assert.ok(Number(seen[1].id) > Number(seen[0].id), "ids increase");
      const second = await service.request("/v1/jobs/resume-1/events", {
        headers: { ...auth, "Last-Event-ID": seen.at(-1)!.id! },
      });
      const rest = await readSse(second);
      assert.deepEqual(rest.map((s) => s.event), ["succeeded"]);
      assert.ok(Number(rest[0].id) > Number(seen[1].id), "ids increase");
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);
