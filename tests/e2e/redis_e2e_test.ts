/** End to end on a real redis-server, with the service as subprocesses and a fake xAI on 127.0.0.1. */
import assert from "node:assert/strict";
import { SESSION_EXPIRED } from "../../lib/live/notifications.ts";
import { readSse, signToken, TEST_SECRET } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, type RedisServer, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest, type Via } from "../support/transports.ts";

async function baseEnv(
  via: Via,
  redis: RedisServer,
  xai: { url: string; host: string },
  extra = {},
) {
  return {
    ...(await via.redisEnv(redis)),
    REDIS_PREFIX: "e2e:",
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    JOB_LEASE_MS: "3000",
    ...extra,
  };
}

async function submit(url: string, token: string, body: Record<string, unknown>) {
  const res = await fetch(`${url}/v1/images`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

async function waitForStatus(url: string, token: string, id: string, statuses: string[]) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/v1/jobs/${id}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = await res.json();
    if (res.ok && statuses.includes(body.status)) return body;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Cannot see job ${id} reach ${statuses.join("/")}`);
}

transportTest(
  "a job submitted over HTTP runs on Redis against the xAI API in b64_json and url modes",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ image: "jpeg" });
    try {
      for (const format of ["b64_json", "url"]) {
        await t.step(format, async () => {
          const service = await startService(
            await baseEnv(via, redis, xai, {
              GROK_RESPONSE_FORMAT: format,
              REDIS_PREFIX: `e2e-${format}:`,
            }),
          );
          try {
            const token = await signToken("alice");
            const before = xai.calls;
            const started = performance.now();
            const { status, body } = await submit(service.url, token, {
              prompt: "a red fox in snow",
            });
            assert.equal(status, 202);
            const res = await fetch(`${service.url}${body.urls.events}`);
            const events = await readSse(res);
            const elapsed = performance.now() - started;
            console.log(`submit to terminal SSE event (${format}): ${elapsed.toFixed(1)} ms`);
            assert.deepEqual(events.map((e) => e.event), ["queued", "started", "succeeded"]);
            const done = JSON.parse(events[2].data);
            assert.equal(done.success, true);
            assert.equal(done.data.mime_type, "image/jpeg");
            assert.match(done.data.image, /^data:image\/jpeg;base64,\/9j\//);
            assert.equal(done.data.revised_prompt, "revised: a red fox in snow");
            assert.equal(xai.calls, before + 1);
            const request = xai.requests.at(-1)!;
            assert.equal(request.authorization, "Bearer xai-test-key");
            const sent = request.body as Record<string, unknown>;
            assert.equal(sent.prompt, "a red fox in snow");
            assert.equal(sent.n, 1);
            assert.equal(sent.response_format, format);
          } finally {
            assert.equal(await service.stop("SIGTERM"), 0);
          }
        });
      }
    } finally {
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "an event published by a worker process reaches an SSE subscriber on an API process",
  async (_t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 300 });
    const api = await startService(await baseEnv(via, redis, xai, { ROLE: "api" }));
    const worker = await startService(await baseEnv(via, redis, xai, { ROLE: "worker" }));
    try {
      const token = await signToken("bob");
      const { body } = await submit(api.url, token, { prompt: "two processes", id: "cross-1" });
      const res = await fetch(`${api.url}/v1/jobs/cross-1/events`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      const events = await readSse(res);
      assert.equal(body.id, "cross-1");
      assert.deepEqual(events.map((e) => e.event), ["queued", "started", "succeeded"]);
      assert.deepEqual(events.map((e) => Number(e.id)), [1, 2, 3]);
      const v1 = await fetch(`${worker.url}/v1/jobs/cross-1`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(v1.status, 404, "a worker-only process serves no /v1 routes");
      await v1.body?.cancel();
    } finally {
      await Promise.all([api.stop(), worker.stop()]);
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "entries other services add to the jobs stream are verified and processed like the seed",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const service = await startService(await baseEnv(via, redis, xai));
    const carol = await signToken("carol");
    /** Adds a job the way another service does: XADD with the seed's fields. */
    const addSeedEntry = (Token: string, Prompt: string, Id: string) =>
      redisCommand(redis.port, [
        "XADD",
        "e2e:jobs",
        "*",
        "Token",
        Token,
        "Prompt",
        Prompt,
        "Id",
        Id,
      ]);
    try {
      await t.step("a valid token runs the job for its subject", async () => {
        await addSeedEntry(carol, "from another service", "seed-ok");
        const job = await waitForStatus(service.url, carol, "seed-ok", ["succeeded", "failed"]);
        assert.equal(job.status, "succeeded");
        assert.equal(job.prompt, "from another service");
        assert.match(job.result.image, /^data:image\/png;base64,/);
      });
      await t.step(
        "an expired token fails with the seed's message and never calls xAI",
        async () => {
          const expired = await signToken("carol", {
            expiresIn: Math.floor(Date.now() / 1000) - 3600,
          });
          const before = xai.calls;
          await addSeedEntry(expired, "too late", "seed-expired");
          const job = await waitForStatus(service.url, carol, "seed-expired", [
            "failed",
            "succeeded",
          ]);
          assert.equal(job.status, "failed");
          assert.equal(job.error, SESSION_EXPIRED);
          const res = await fetch(`${service.url}/v1/jobs/seed-expired/events`, {
            headers: { Authorization: `Bearer ${carol}` },
          });
          const events = await readSse(res);
          const last = JSON.parse(events.at(-1)!.data);
          assert.deepEqual([last.type, last.success, last.error], [
            "failed",
            false,
            SESSION_EXPIRED,
          ]);
          assert.equal(xai.calls, before);
        },
      );
      await t.step("an entry never overwrites an existing job with the same id", async () => {
        const dave = await signToken("dave");
        await addSeedEntry(dave, "hijack", "seed-ok");
        await addSeedEntry(carol, "marker", "seed-marker");
        await waitForStatus(service.url, carol, "seed-marker", ["succeeded"]);
        const job = await waitForStatus(service.url, carol, "seed-ok", ["succeeded"]);
        assert.equal(job.prompt, "from another service");
        const res = await fetch(`${service.url}/v1/jobs/seed-ok`, {
          headers: { Authorization: `Bearer ${dave}` },
        });
        assert.equal(res.status, 404);
        await res.body?.cancel();
      });
      await t.step("no bearer token is stored in Redis", async () => {
        const token = await signToken("erin");
        await submit(service.url, token, { prompt: "secret check", id: "tok-check" });
        await waitForStatus(service.url, token, "tok-check", ["succeeded"]);
        const keys = await redisCommand(redis.port, ["KEYS", "*"]) as string[];
        for (const key of keys) {
          const type = await redisCommand(redis.port, ["TYPE", key]);
          const dump = type === "hash"
            ? await redisCommand(redis.port, ["HGETALL", key])
            : type === "string"
            ? await redisCommand(redis.port, ["GET", key])
            : type === "stream"
            ? await redisCommand(redis.port, ["XRANGE", key, "-", "+"])
            : [];
          assert.ok(!JSON.stringify(dump).includes(token), `token found in ${key}`);
        }
      });
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "while Redis is down readyz and POST answer 503 with Retry-After, and the service recovers",
  async (_t, via) => {
    const redis = await startRedis({ appendonly: true });
    const xai = await startFakeXai();
    const service = await startService(await baseEnv(via, redis, xai));
    try {
      const token = await signToken("frank");
      assert.equal(await fetch(`${service.url}/readyz`).then((r) => r.status), 200);
      await redis.kill();
      const ready = await fetch(`${service.url}/readyz`);
      assert.equal(ready.status, 503);
      await ready.body?.cancel();
      const started = Date.now();
      const { status, body, headers } = await submit(service.url, token, {
        prompt: "during outage",
      });
      assert.equal(status, 503);
      assert.equal(body.error.code, "unavailable");
      assert.ok(Number(headers.get("Retry-After")) >= 1);
      assert.ok(Date.now() - started < 5_000, "answered within 5 s");
      await redis.restart();
      const deadline = Date.now() + 15_000;
      let after = 0;
      while (Date.now() < deadline && after !== 202) {
        after =
          (await submit(service.url, token, { prompt: "after outage", id: "after-1" })).status;
        if (after !== 202) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(after, 202);
      const job = await waitForStatus(service.url, token, "after-1", ["succeeded"]);
      assert.equal(job.status, "succeeded");
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
);

Deno.test({
  name:
    "one relay connection serves every SSE subscriber of a process, and SIGTERM ends streams with retry:",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 20_000 });
    const via: Via = { name: "tcp", redisEnv: (r) => Promise.resolve({ REDIS_URL: r.url }) };
    const service = await startService(await baseEnv(via, redis, xai, { DRAIN_TIMEOUT_MS: "200" }));
    const clients = async () =>
      String(await redisCommand(redis.port, ["CLIENT", "LIST"])).trim().split("\n").length;
    try {
      const token = await signToken("ivy");
      const { body } = await submit(service.url, token, {
        prompt: "watched by many",
        id: "many-1",
      });
      assert.equal(body.id, "many-1");
      const before = await clients();
      const streams = await Promise.all(
        Array.from(
          { length: 20 },
          () =>
            fetch(`${service.url}/v1/jobs/many-1/events`, {
              headers: { Authorization: `Bearer ${token}` },
            }),
        ),
      );
      assert.ok(streams.every((res) => res.status === 200));
      assert.equal(await clients(), before, "subscribers open no Redis connections");
      // Read each stream until its replay arrived, then stop the service and read to the end.
      const readers = streams.map((res) =>
        res.body!.pipeThrough(new TextDecoderStream()).getReader()
      );
      const texts = await Promise.all(readers.map(async (reader) => {
        let text = "";
        while (!text.includes("event: queued")) text += (await reader.read()).value ?? "";
        return text;
      }));
      assert.equal(await service.stop("SIGTERM"), 0);
      for (const [i, reader] of readers.entries()) {
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
          texts[i] += chunk.value;
        }
        assert.match(texts[i], /event: queued/);
        assert.match(texts[i], /^retry: \d+$/m);
      }
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "a succeeded event is read from Redis once per process, however many subscribers watch it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 1_500 });
    const via: Via = { name: "tcp", redisEnv: (r) => Promise.resolve({ REDIS_URL: r.url }) };
    const service = await startService(
      await baseEnv(via, redis, xai, { MAX_STREAMS_PER_OWNER: "0" }),
    );
    const hgetalls = async () => {
      const info = String(await redisCommand(redis.port, ["INFO", "commandstats"]));
      return Number(info.match(/cmdstat_hgetall:calls=(\d+)/)?.[1] ?? 0);
    };
    try {
      const token = await signToken("jay");
      await submit(service.url, token, { prompt: "popular", id: "popular-1" });
      const streams = await Promise.all(
        Array.from({ length: 50 }, () =>
          fetch(`${service.url}/v1/jobs/popular-1/events`, {
            headers: { Authorization: `Bearer ${token}` },
          })),
      );
      const before = await hgetalls();
      const texts = await Promise.all(streams.map((res) => res.text()));
      for (const text of texts) {
        assert.equal((text.match(/^event: succeeded$/gm) ?? []).length, 1);
        assert.equal((text.match(/^event: started$/gm) ?? []).length, 1);
      }
      assert.ok(await hgetalls() - before <= 2, `${await hgetalls() - before} reads`);
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
});
