/** End to end on a real redis-server, with the service as subprocesses and a fake xAI on 127.0.0.1. */
import assert from "node:assert/strict";
import { readSse, signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { baseEnv, submit, waitForStatus } from "./e2e_helpers.ts";

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
      const ids = events.map((e) => Number(e.id));
      assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `ids increase: ${ids}`);
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
