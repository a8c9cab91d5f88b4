/**
 * The worker's leases on a real redis-server: a worker paused past its lease is fenced off, duplicate
 * seed entries run once, and entries with an invalid Id are dead-lettered without a provider call.
 */
import assert from "node:assert/strict";
import { signToken, startTestService, TEST_SECRET } from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, type RedisServer, startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { transportTest, type Via } from "../support/transports.ts";
import { eventTypes } from "./faults_helpers.ts";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

async function env(via: Via, redis: RedisServer, xai: FakeXai, extra: Record<string, string> = {}) {
  return {
    ...(await via.redisEnv(redis)),
    REDIS_PREFIX: `l${crypto.randomUUID().slice(0, 6)}:`,
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    RATE_LIMIT_PER_MINUTE: "0",
    ...extra,
  };
}

async function waitFor(what: string, check: () => unknown, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Cannot see ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Adds seed entries (`Token`, `Prompt`, `Id`) to the jobs stream in one atomic step. */
async function addSeedEntries(
  redis: RedisServer,
  stream: string,
  entries: { token: string; prompt: string; id: string }[],
): Promise<void> {
  const script = `for i = 1, #ARGV, 3 do
    redis.call('XADD', KEYS[1], '*', 'Token', ARGV[i], 'Prompt', ARGV[i + 1], 'Id', ARGV[i + 2])
  end`;
  const args = entries.flatMap((e) => [e.token, e.prompt, e.id]);
  await redisCommand(redis.port, ["EVAL", script, "1", stream, ...args]);
}

transportTest(
  "a worker paused past its lease has its provider call aborted on resuming and the job ends once",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 5_000 }); // the second call is still running when the first resumes
    const e = await env(via, redis, xai, { JOB_LEASE_MS: "1000", ROLE: "worker" });
    const api = await startTestService({ env: { ...e, ROLE: "api" } });
    const first = await startService(e);
    let second: ServiceProcess | undefined;
    const prompt = "prompt of paused-1";
    const calls = () => xai.callsByPrompt.get(prompt) ?? 0;
    try {
      xai.inject({ delayMs: 60_000 }); // the first call would outlast the whole test
      const token = await signToken("pat");
      const res = await api.request("/v1/images", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ prompt, id: "paused-1" }),
      });
      assert.equal(res.status, 202, await res.text());
      await waitFor("the first worker calling the provider", () => calls() === 1);
      Deno.kill(first.pid, "SIGSTOP");
      second = await startService(e);
      await waitFor("the second worker taking the job over", () => calls() === 2);
      assert.equal(xai.aborted, 0);
      Deno.kill(first.pid, "SIGCONT");
      await waitFor("the first worker's call aborted", () => xai.aborted === 1);
      const atAbort = await eventTypes(redis, e.REDIS_PREFIX, "paused-1");
      assert.ok(
        !atAbort.some((type) => TERMINAL.has(type)),
        `aborted by its lost lease, not by the job's end (${atAbort})`,
      );
      await waitFor("the job's end", async () => {
        const types = await eventTypes(redis, e.REDIS_PREFIX, "paused-1");
        return types.some((type) => TERMINAL.has(type));
      });
      // With both workers stopped nothing is in flight: the counts below are final.
      assert.equal(await first.stop("SIGTERM"), 0);
      assert.equal(await second.stop("SIGTERM"), 0);
      assert.deepEqual(await eventTypes(redis, e.REDIS_PREFIX, "paused-1"), [
        "queued",
        "started",
        "succeeded",
      ]);
      assert.equal(calls(), 2, "one call by each worker, none after the first resumed");
      assert.equal(xai.aborted, 1);
      assert.match(first.output(), /Lost the lease of job/);
      assert.equal(await redisCommand(redis.port, ["XLEN", `${e.REDIS_PREFIX}jobs`]), 0);
    } finally {
      try {
        Deno.kill(first.pid, "SIGCONT");
      } catch {
        // already gone
      }
      await first.stop("SIGKILL");
      await second?.stop("SIGKILL");
      await api.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "two seed entries with one Id call the provider once and the job ends once",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 500 });
    // Over Upstash, entries added without a wake-up wait for the safety poll: set it short here.
    const e = await env(via, redis, xai, {
      WORKER_CONCURRENCY: "4",
      UPSTASH_SAFETY_POLL_MS: "500",
    });
    const service = await startTestService({ env: e });
    try {
      const token = await signToken("sam");
      const entry = { token, prompt: "said twice", id: "twice-1" };
      await addSeedEntries(redis, `${e.REDIS_PREFIX}jobs`, [entry, entry]);
      await waitFor("both entries handled", async () => {
        const left = await redisCommand(redis.port, ["XLEN", `${e.REDIS_PREFIX}jobs`]);
        const types = await eventTypes(redis, e.REDIS_PREFIX, "twice-1");
        return left === 0 && types.some((type) => TERMINAL.has(type));
      });
      assert.deepEqual(await eventTypes(redis, e.REDIS_PREFIX, "twice-1"), [
        "queued",
        "started",
        "succeeded",
      ]);
      assert.equal(xai.callsByPrompt.get("said twice"), 1);
      await waitFor("the slots freed", () => service.runtime.worker!.active === 0);
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "seed entries whose Id is not a valid job id are dead-lettered and never reach the provider",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    // Over Upstash, entries added without a wake-up wait for the safety poll: set it short here (a
    // worker whose first claim came before the entries would otherwise find them 120 s later).
    const e = await env(via, redis, xai, { UPSTASH_SAFETY_POLL_MS: "500" });
    const service = await startTestService({ env: e });
    try {
      const token = await signToken("sam");
      const bad = ["bad id!", "x".repeat(129), "a/b"];
      const entries = bad.map((id) => ({ token, prompt: `prompt of ${id}`, id }));
      await addSeedEntries(redis, `${e.REDIS_PREFIX}jobs`, entries);
      const dead = `${e.REDIS_PREFIX}jobs:dead`;
      await waitFor("every entry dead-lettered", async () => {
        const left = await redisCommand(redis.port, ["XLEN", `${e.REDIS_PREFIX}jobs`]);
        return left === 0 && await redisCommand(redis.port, ["XLEN", dead]) === bad.length;
      });
      const letters = await redisCommand(redis.port, ["XRANGE", dead, "-", "+"]) as [
        string,
        string[],
      ][];
      const ids = letters.map(([, fields]) => fields[fields.indexOf("Id") + 1]);
      assert.deepEqual(ids.sort(), [...bad].sort());
      assert.equal(xai.calls, 0);
      for (const id of bad) {
        assert.equal(await redisCommand(redis.port, ["EXISTS", `${e.REDIS_PREFIX}job:${id}`]), 0);
      }
    } finally {
      await service.close();
      await xai.close();
      await redis.stop();
    }
  },
);
