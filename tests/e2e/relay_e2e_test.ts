/** End to end: the relay's one Redis reader per process, under many subscribers and at SIGTERM. */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import type { Via } from "../support/transports.ts";
import { baseEnv, submit } from "./e2e_helpers.ts";

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
