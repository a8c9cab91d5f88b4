/**
 * The provider is shared (issue 17), end to end: two service processes on one Redis (TCP, Upstash REST,
 * and three partitions) against a fake xAI that allows a few requests a second and answers 429 past it.
 */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { type FakeXai, maxInWindow, startFakeXai } from "../support/fake_xai.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { transportTest, type Via } from "../support/transports.ts";
import { baseEnv, submit } from "./e2e_helpers.ts";

/** Every job's status, by polling the owners' listings until none is queued or running. */
async function settle(url: string, tokens: string[], total: number, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const jobs = [];
    for (const token of tokens) {
      const res = await fetch(`${url}/v1/jobs?limit=100`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      jobs.push(...(await res.json()).data);
    }
    const done = jobs.filter((j) => !["queued", "running"].includes(j.status));
    if (jobs.length === total && done.length === total) return jobs;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`Cannot see ${total} jobs end within ${ms} ms`);
}

/** Two processes on one Redis, both API and worker, with `extra` environment. */
async function twoProcesses(via: Via, redis: RedisServer, xai: FakeXai, extra: object) {
  const env = await baseEnv(via, redis, xai, {
    WORKER_CONCURRENCY: "16",
    JOB_MAX_ATTEMPTS: "2",
    RATE_LIMIT_PER_MINUTE: "0",
    MAX_ACTIVE_JOBS_PER_OWNER: "0",
    ...extra,
  });
  return await Promise.all([startService(env), startService(env)]);
}

/** Submits `n` jobs of one owner through both processes in turn; their ids. */
async function submitMany(services: ServiceProcess[], token: string, prefix: string, n: number) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const { status, body } = await submit(services[i % 2].url, token, { prompt: `${prefix} ${i}` });
    assert.equal(status, 202);
    ids.push(body.id);
  }
  return ids;
}

/** The pace test: 40 jobs of two owners at 8/s, 0 failed, and almost no 429. */
async function pacedRun(via: Via, partitions: number) {
  const redis = await startRedis();
  const xai = await startFakeXai({ latencyMs: 100, rateLimit: { rps: 8 } });
  const env = { GROK_MAX_RPS: "8", JOB_PARTITIONS: String(partitions) };
  const services = await twoProcesses(via, redis, xai, env);
  try {
    const tokens = [await signToken("pace-a"), await signToken("pace-b")];
    await submitMany(services, tokens[0], "a", 30);
    await submitMany(services, tokens[1], "b", 10);
    const jobs = await settle(services[0].url, tokens, 40);
    assert.deepEqual(jobs.filter((j) => j.status !== "succeeded").map((j) => j.id), []);
    assert.ok(jobs.every((j) => j.attempts === 1), "no job spent an attempt on a 429");
    const calls = xai.accepted + xai.rateLimited;
    assert.equal(xai.accepted, 40);
    assert.ok(xai.rateLimited / calls < 0.05, `${xai.rateLimited} 429s of ${calls} calls`);
    // GCRA: in any window of T seconds at most pace × T + a burst of two turns per partition (one
    // more for the jitter between a turn and its call's arrival; the exact peaks are in the bench).
    const peak = maxInWindow(xai.acceptedAt, 3_000);
    assert.ok(peak <= 8 * 3 + 2 * partitions + 1, `at most the pace in any 3 s: ${peak}`);
    console.log(
      `paced (${via.name}, ${partitions} partition(s)): ${xai.accepted} accepted, ` +
        `${xai.rateLimited} 429s, max ${maxInWindow(xai.acceptedAt, 1_000)} in a second`,
    );
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await xai.close();
    await redis.stop();
  }
}

transportTest(
  "two processes together keep to GROK_MAX_RPS: no job fails and 429s stay under 5% of calls",
  async (_t, via) => await pacedRun(via, 1),
);

/** The TCP transport alone, for the tests that one transport shows. */
const tcp: Via = { name: "tcp", redisEnv: (redis) => Promise.resolve({ REDIS_URL: redis.url }) };
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

test(
  "three partitions share GROK_MAX_RPS between them: no job fails and 429s stay under 5% of calls",
  async () => await pacedRun(tcp, 3),
);

test(
  "with GROK_MAX_RPS=0 the pace is learned from 429s: no job fails and far fewer 429s than calls",
  async () => {
    const via = tcp;
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 100, rateLimit: { rps: 10 } });
    const services = await twoProcesses(via, redis, xai, { GROK_MAX_RPS: "0" });
    try {
      const token = await signToken("learn");
      await submitMany(services, token, "l", 80);
      const jobs = await settle(services[0].url, [token], 80);
      assert.deepEqual(jobs.filter((j) => j.status !== "succeeded").map((j) => j.id), []);
      assert.equal(xai.accepted, 80);
      // The first second goes out at will (32 slots) and meets 429s; then the pace is learned.
      assert.ok(xai.rateLimited < xai.accepted / 2, `${xai.rateLimited} 429s, ${xai.accepted} ok`);
      // Each process counts its own calls: the two together saw every 429 and every cent.
      const texts = await Promise.all(
        services.map(async (s) => await (await fetch(`${s.url}/metrics`)).text()),
      );
      const sum = (re: RegExp) => texts.reduce((n, text) => n + Number(re.exec(text)?.[1] ?? 0), 0);
      assert.equal(
        sum(/^provider_requests_total\{outcome="rate_limited"\} (\S+)$/m),
        xai.rateLimited,
      );
      assert.equal(sum(/^provider_requests_total\{outcome="succeeded"\} (\S+)$/m), 80);
      assert.ok(Math.abs(sum(/^provider_cost_usd_total (\S+)$/m) - 80 * 0.02) < 1e-6);
      const paces = texts.map((text) => Number(/^provider_pace_rps (\S+)$/m.exec(text)?.[1]));
      const pace = Math.max(...paces);
      // 32 slots at 100 ms a call ask for far more than 10/s: 429s come, and the pace is learned.
      assert.ok(xai.rateLimited > 0);
      assert.ok(pace > 0 && pace < 40, `learned pace ${paces}`);
      console.log(`learned: ${xai.accepted} accepted, ${xai.rateLimited} 429s, pace ${pace}`);
    } finally {
      await Promise.all(services.map((s) => s.stop()));
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "a light owner's job behind another owner's backlog runs within a few turns, not after it",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 50, rateLimit: { rps: 5 } });
    const services = await twoProcesses(via, redis, xai, { GROK_MAX_RPS: "5" });
    try {
      const heavy = await signToken("heavy");
      const light = await signToken("light");
      const ids = await submitMany(services, heavy, "h", 30);
      const { body } = await submit(services[1].url, light, { prompt: "the light one" });
      const done = await fetch(`${services[1].url}${body.urls.events}`);
      const text = await done.text();
      assert.match(text, /event: succeeded/);
      // Heavy jobs that reached the provider before the light one (the backlog is 6 s long).
      const before = xai.requests.findIndex((r) =>
        (r.body as { prompt: string }).prompt === "the light one"
      );
      assert.ok(before >= 0);
      assert.ok(before <= 6, `${before} heavy calls went first, of ${ids.length}`);
      await settle(services[0].url, [heavy], 30);
    } finally {
      await Promise.all(services.map((s) => s.stop()));
      await xai.close();
      await redis.stop();
    }
  },
);
