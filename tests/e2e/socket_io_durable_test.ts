/**
 * End to end: the Socket.IO bridge delivers at least once. A process killed (SIGKILL) before it
 * emitted a job's notice, or after emitting it on a link that lost it, leaves the notice in Redis; the
 * next process emits it, with the same event id.
 */
import assert from "node:assert/strict";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, type RedisServer, startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { freePort, startSocketIoServer } from "../support/socket_io_server.ts";
import { submit, waitForStatus } from "./e2e_helpers.ts";

/** A service's environment on Redis and the fake xAI, notifying the Socket.IO service on `port`. */
function env(redis: RedisServer, xai: FakeXai, port: number, prefix: string) {
  return {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    NOTIFY_SOCKET_IO_URL: `http://127.0.0.1:${port}`,
    // A notice whose process died comes back after this lease.
    NOTIFY_SOCKET_IO_LEASE_MS: "1000",
  };
}

/** Runs one job to its end; returns its id and the id of its last (terminal) event. */
async function runJob(service: ServiceProcess, token: string) {
  const { status, body } = await submit(service.url, token, { prompt: "a red fox in snow" });
  assert.equal(status, 202);
  const job = await waitForStatus(service.url, token, body.id, ["succeeded"]);
  return { id: body.id as string, image: job.result.image as string };
}

/** Waits until the service's /metrics shows this line (polled; it bounds a hang, it times nothing). */
async function metricLine(service: ServiceProcess, line: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    if (text.split("\n").includes(line)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Cannot see ${line} in /metrics`);
}

const EMITTED_ONCE = 'socket_io_notifications_total{result="emitted"} 1';

Deno.test({
  name: "a notice the killed process never emitted is emitted by the next one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const port = freePort(); // the Socket.IO service is down while the job ends
    let server;
    try {
      const first = await startService(env(redis, xai, port, "sio-kill1:"));
      const job = await runJob(first, await signToken("alice"));
      assert.equal(await first.stop("SIGKILL"), 137);
      server = await startSocketIoServer({ port, pingIntervalMs: 600_000 });
      const second = await startService(env(redis, xai, port, "sio-kill1:"));
      try {
        const [got] = await server.waitFor(1, 20_000);
        assert.deepEqual(got.payload, { Id: job.id, success: true, data: { image: job.image } });
        // The id of the job's terminal event (the last one, `lid` in its hash).
        const last = await redisCommand(redis.port, ["HGET", `sio-kill1:job:${job.id}`, "lid"]);
        assert.deepEqual(got.meta, { event_id: String(last) });
      } finally {
        await second.stop("SIGTERM");
      }
    } finally {
      await server?.close();
      await xai.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name:
    "a notice emitted on a link that lost it, unconfirmed when the process died, is emitted again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    // The first connection loses what it carries and never pings (a half-open link); the seed's
    // server acknowledges nothing.
    const server = await startSocketIoServer({
      pingIntervalMs: 600_000,
      keep: (index) => index > 1,
    });
    try {
      const first = await startService(env(redis, xai, server.port, "sio-kill2:"));
      const job = await runJob(first, await signToken("alice"));
      await metricLine(first, EMITTED_ONCE);
      assert.equal(server.received.length, 0);
      assert.equal(await first.stop("SIGKILL"), 137);
      const second = await startService(env(redis, xai, server.port, "sio-kill2:"));
      try {
        const [got] = await server.waitFor(1, 20_000);
        assert.deepEqual(got.payload, { Id: job.id, success: true, data: { image: job.image } });
        const last = await redisCommand(redis.port, ["HGET", `sio-kill2:job:${job.id}`, "lid"]);
        assert.deepEqual(got.meta, { event_id: String(last) });
        await metricLine(second, EMITTED_ONCE);
        assert.equal(server.connections, 2);
      } finally {
        await second.stop("SIGTERM");
      }
    } finally {
      await server.close();
      await xai.close();
      await redis.stop();
    }
  },
});
