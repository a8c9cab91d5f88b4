/** End to end: every job's end also reaches the seed's Socket.IO service as `{Id, success, data}`. */
import assert from "node:assert/strict";
import { PROCESSING_ERROR, SESSION_EXPIRED } from "../../lib/live/notifications.ts";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { redisCommand, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { freePort, startSocketIoServer } from "../support/socket_io_server.ts";
import { submit, waitForStatus } from "./e2e_helpers.ts";

/** A DEV_MODE service's environment on the memory broker and the fake xAI, with `extra` on top. */
function devEnv(xai: FakeXai, extra: Record<string, string>): Record<string, string> {
  return {
    DEV_MODE: "1",
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    JOB_MAX_ATTEMPTS: "1",
    ...extra,
  };
}

async function devToken(url: string, sub: string): Promise<string> {
  const res = await fetch(`${url}/v1/dev/token`, { method: "POST", body: JSON.stringify({ sub }) });
  assert.equal(res.status, 200);
  return (await res.json()).token;
}

/** Submits a job with this id and waits until it ended, returning the job as GET shows it. */
async function runJob(url: string, token: string, id: string) {
  const { status } = await submit(url, token, { prompt: `prompt of ${id}`, id });
  assert.equal(status, 202);
  return await waitForStatus(url, token, id, ["succeeded", "failed", "canceled"]);
}

Deno.test({
  name: "a DEV_MODE service emits one seed-shaped notice per ended job to NOTIFY_SOCKET_IO_URL",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const xai = await startFakeXai({ image: "jpeg" });
    const server = await startSocketIoServer();
    const service = await startService(devEnv(xai, { NOTIFY_SOCKET_IO_URL: server.url }));
    try {
      const token = await devToken(service.url, "alice");
      const ok = await runJob(service.url, token, "sio-ok");
      assert.equal(ok.status, "succeeded");
      // A cancel ends its job in the API process: that process tells the seed's service, once.
      xai.inject({ hang: true });
      const { status } = await submit(service.url, token, {
        prompt: "to cancel",
        id: "sio-cancel",
      });
      assert.equal(status, 202);
      await waitForStatus(service.url, token, "sio-cancel", ["running"]);
      const canceled = await fetch(`${service.url}/v1/jobs/sio-cancel`, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(canceled.status, 202);
      await canceled.body?.cancel();
      xai.inject({ status: 400 }, { status: 400 });
      const bad = await runJob(service.url, token, "sio-bad");
      assert.equal(bad.status, "failed");
      // All ended before this one started: once its notice arrives, theirs (and any repeat) have too.
      await runJob(service.url, token, "sio-sentinel");
      await server.waitFor(4);
      assert.deepEqual(server.received.map((r) => r.event), [
        "notify",
        "notify",
        "notify",
        "notify",
      ]);
      const [okNotice, cancelNotice, badNotice, sentinel] = server.received.map((r) => r.payload);
      // Each emit carries its event id (a job's events count 1, 2, 3…; a repeat would carry the same).
      for (const { meta } of server.received) {
        assert.match((meta as { event_id: string }).event_id, /^\d/);
      }
      assert.deepEqual(cancelNotice, { Id: "sio-cancel", success: false, data: "Job canceled" });
      assert.deepEqual(okNotice, { Id: "sio-ok", success: true, data: { image: ok.result.image } });
      const image = (okNotice as { data: { image: string } }).data.image;
      assert.match(image, /^data:image\/jpeg;base64,/);
      const bytes = Uint8Array.fromBase64(image.slice(image.indexOf(",") + 1));
      assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff], "the JPEG's own bytes");
      assert.deepEqual(badNotice, { Id: "sio-bad", success: false, data: PROCESSING_ERROR });
      assert.deepEqual(sentinel, { Id: "sio-sentinel", success: false, data: PROCESSING_ERROR });
      assert.equal(server.connections, 1);
    } finally {
      await service.stop();
      await server.close();
      await xai.close();
    }
  },
});

Deno.test({
  name:
    "a job that ends while the Socket.IO service is down is delivered once it comes up (PORT_MESSAGES_USERS)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const xai = await startFakeXai({ image: "jpeg" });
    const port = freePort();
    const service = await startService(devEnv(xai, { PORT_MESSAGES_USERS: String(port) }));
    let server;
    try {
      const token = await devToken(service.url, "bob");
      const job = await runJob(service.url, token, "sio-early");
      assert.equal(job.status, "succeeded");
      server = await startSocketIoServer({ port });
      const [{ meta, ...got }] = await server.waitFor(1);
      assert.deepEqual(got, {
        event: "notify",
        payload: { Id: "sio-early", success: true, data: { image: job.result.image } },
      });
      assert.match((meta as { event_id: string }).event_id, /^\d/);
    } finally {
      await service.stop();
      await server?.close();
      await xai.close();
    }
  },
});

Deno.test({
  name: "a seed entry refused for its token emits the seed's session message on a custom event",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const server = await startSocketIoServer({ events: ["notify", "job-ended"] });
    const { DEV_MODE: _, ...env } = devEnv(xai, {
      NOTIFY_SOCKET_IO_URL: server.url,
      NOTIFY_SOCKET_IO_EVENT: "job-ended",
      REDIS_URL: redis.url,
      REDIS_PREFIX: "sio:",
      JWT_SECRET: TEST_SECRET,
    });
    const service = await startService(env);
    try {
      const expired = await signToken("carol", {
        expiresIn: Math.floor(Date.now() / 1000) - 3600,
      });
      await redisCommand(redis.port, [
        "XADD",
        "sio:jobs",
        "*",
        "Token",
        expired,
        "Prompt",
        "too late",
        "Id",
        "sio-expired",
      ]);
      const [{ meta: _, ...got }] = await server.waitFor(1);
      assert.deepEqual(got, {
        event: "job-ended",
        payload: { Id: "sio-expired", success: false, data: SESSION_EXPIRED },
      });
    } finally {
      await service.stop();
      await server.close();
      await xai.close();
      await redis.stop();
    }
  },
});
