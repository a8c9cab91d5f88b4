/** WebSocket messages handled in order, the per-socket caps, and the upgrade handshake's edges. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { Auth } from "../../lib/auth/jwt.ts";
import { Relay } from "../../lib/live/relay.ts";
import {
  appWith,
  countingProvider,
  delay,
  serveTestService,
  startTestService,
  submitJob,
  type TestService,
  until,
  vanishingBroker,
} from "../support/app.ts";
import { Client, type Message } from "../support/ws_client.ts";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** A verifier that takes `ms` to answer, as a cold JWKS fetch does. */
function slowAuth(service: TestService, ms: number): Auth {
  return {
    async verify(token) {
      await delay(ms);
      return await service.runtime.deps.auth.verify(token);
    },
  };
}

async function withServer(
  fn: (service: TestService, wsOrigin: string) => Promise<void>,
  { env = {}, gate, slowAuthMs }: {
    env?: Record<string, string>;
    gate?: Promise<void>;
    slowAuthMs?: number;
  } = {},
): Promise<void> {
  const service = await startTestService({ provider: countingProvider({ gate }), env });
  const app = slowAuthMs ? appWith(service, { auth: slowAuth(service, slowAuthMs) }) : undefined;
  const server = serveTestService(service, app);
  try {
    await fn(service, server.wsOrigin);
  } finally {
    await service.close();
    await server.close();
  }
}

Deno.test("GET /v1/ws handles auth then subscribe in order however slow the token check is", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token });
      client.send({ type: "subscribe", id: body.id });
      assert.equal((await client.next()).type, "authenticated");
      const byJob = await client.notifications([body.id]);
      assert.deepEqual(byJob.get(body.id)!.map((m) => m.notification.type), [
        "queued",
        "started",
        "succeeded",
      ]);
    } finally {
      await client.close();
    }
  }, { slowAuthMs: 300 });
});

Deno.test("GET /v1/ws takes one stream slot for two auth messages", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const streams = service.runtime.deps.streams;
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token });
      client.send({ type: "auth", token });
      assert.equal((await client.next()).type, "authenticated");
      const second = await client.next();
      assert.equal(second.type, "error");
      assert.equal(second.code, "invalid_request");
      assert.equal(streams.count("alice"), 1);
    } finally {
      await client.close();
    }
    await until(() => streams.count("alice") === 0, "the slot released");
  }, { slowAuthMs: 200 });
});

Deno.test("GET /v1/ws delivers every result to a socket with 300 jobs outstanding", async () => {
  const gate = Promise.withResolvers<void>();
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("batch");
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      ids.push((await submitJob(service, token, { prompt: `p${i}` })).body.id);
    }
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token });
      for (const id of ids) client.send({ type: "subscribe", id });
      const queued = new Set<string>();
      const ended = new Set<string>();
      while (ended.size < ids.length) {
        const message: Message = await client.next();
        if (message.type === "authenticated") continue;
        assert.equal(message.type, "notification", JSON.stringify(message));
        if (message.notification.type === "queued") queued.add(message.notification.id);
        // Every job is subscribed (its replay arrived) before any may finish.
        if (queued.size === ids.length) gate.resolve();
        if (TERMINAL.has(message.notification.type)) ended.add(message.notification.id);
      }
      assert.equal(ended.size, 300);
    } finally {
      gate.resolve();
      await client.close();
    }
  }, { env: { MAX_ACTIVE_JOBS_PER_OWNER: "0" }, gate: gate.promise });
});

Deno.test("GET /v1/ws holds one socket to WS_MAX_SUBSCRIPTIONS subscriptions", async () => {
  const gate = Promise.withResolvers<void>();
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await submitJob(service, token)).body.id);
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token });
      for (const id of ids) client.send({ type: "subscribe", id });
      let refused: Message;
      do refused = await client.next(); while (refused.type !== "error");
      assert.equal(refused.code, "rate_limited");
      assert.equal(refused.id, ids[2]);
    } finally {
      gate.resolve();
      await client.close();
    }
  }, { env: { WS_MAX_SUBSCRIPTIONS: "2" }, gate: gate.promise });
});

Deno.test("GET /v1/ws upgrades whatever the letter case of the Upgrade header", async (t) => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    const port = new URL(wsOrigin).port;
    for (const upgrade of ["WEBSOCKET", "websocket", "WebSocket"]) {
      await t.step(upgrade, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
        try {
          const request = `GET ${body.urls.websocket} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
            `Upgrade: ${upgrade}\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
          await conn.write(new TextEncoder().encode(request));
          const buffer = new Uint8Array(4096);
          const n = await conn.read(buffer);
          const head = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
          assert.match(head, /^HTTP\/1\.1 101 /);
          assert.match(head, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
        } finally {
          conn.close();
        }
      });
    }
  });
});

Deno.test("GET /v1/ws answers not_found for a subscribed job that disappears", async () => {
  const gate = Promise.withResolvers<void>();
  const service = await startTestService({ provider: countingProvider({ gate: gate.promise }) });
  const { broker, forget } = vanishingBroker(service.runtime.deps.broker);
  const relay = new Relay({ broker, log: getLogger(["imagejobs", "test"]), resyncMs: 50 });
  await relay.start();
  const server = serveTestService(service, appWith(service, { relay }));
  try {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    const client = new Client(`${server.wsOrigin}${body.urls.websocket}`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "subscribe", id: body.id });
      assert.equal((await client.next()).notification.type, "queued");
      forget(body.id);
      let message: Message;
      do message = await client.next(); while (message.type === "notification");
      assert.equal(message.type, "error");
      assert.equal(message.code, "not_found");
      assert.equal(message.id, body.id);
      assert.equal(relay.size, 0);
    } finally {
      await client.close();
    }
  } finally {
    gate.resolve();
    await relay.close();
    await service.close();
    await server.close();
  }
});
