/** Tests of GET /v1/ws: tickets, auth messages, subscriptions, replay, origins and limits. */
import assert from "node:assert/strict";
import { compareEventIds } from "../../lib/live/notifications.ts";
import { Client, type Message } from "../support/ws_client.ts";
import {
  countingProvider,
  serveTestService,
  startTestService,
  submitJob,
  type TestService,
  waitForStatus,
} from "../support/app.ts";

/** Checks order and shape of one job's notification messages and returns their types. */
function typesOf(messages: Message[], id: string): string[] {
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    assert.deepEqual(Object.keys(message).sort(), ["event_id", "notification", "type"]);
    assert.equal(message.notification.id, id);
    if (i > 0) assert.ok(compareEventIds(messages[i - 1].event_id, message.event_id) < 0);
  }
  return messages.map((message) => message.notification.type);
}

async function withServer(
  fn: (service: TestService, wsOrigin: string) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const service = await startTestService({ provider: countingProvider({ latencyMs: 100 }), env });
  const server = serveTestService(service);
  try {
    await fn(service, server.wsOrigin);
  } finally {
    await service.close();
    await server.close();
  }
}

Deno.test("GET /v1/ws with a ticket streams one job's notifications in order", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    const other = await submitJob(service, token);
    const client = new Client(`${wsOrigin}${body.urls.websocket}`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "subscribe", id: other.body.id });
      const refused = await client.next();
      assert.equal(refused.type, "error");
      assert.equal(refused.code, "not_found");
      client.send({ type: "subscribe", id: body.id });
      const byJob = await client.notifications([body.id]);
      assert.deepEqual(typesOf(byJob.get(body.id)!, body.id), ["queued", "started", "succeeded"]);
      const last = byJob.get(body.id)!.at(-1).notification;
      assert.equal(last.success, true);
      assert.match(last.data.image, /^data:image\/png;base64,/);
    } finally {
      await client.close();
    }
  });
});

Deno.test("GET /v1/ws authenticates by first message and serves two jobs on one socket", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const a = (await submitJob(service, token, { prompt: "first" })).body;
    const b = (await submitJob(service, token, { prompt: "second" })).body;
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token });
      client.send({ type: "subscribe", id: a.id });
      client.send({ type: "subscribe", id: b.id });
      const byJob = await client.notifications([a.id, b.id]);
      assert.deepEqual(typesOf(byJob.get(a.id)!, a.id), ["queued", "started", "succeeded"]);
      assert.deepEqual(typesOf(byJob.get(b.id)!, b.id), ["queued", "started", "succeeded"]);
    } finally {
      await client.close();
    }
  });
});

Deno.test("GET /v1/ws closes with 1008 when authentication fails", async (t) => {
  await withServer(async (service, wsOrigin) => {
    await t.step("with a bad token in the auth message", async () => {
      const client = new Client(`${wsOrigin}/v1/ws`);
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token: "not-a-jwt" });
      assert.equal((await client.closed).code, 1008);
    });
    await t.step("with a subscribe before any auth message", async () => {
      const client = new Client(`${wsOrigin}/v1/ws`);
      assert.equal(await client.opened, true);
      client.send({ type: "subscribe", id: "some-job" });
      assert.equal((await client.closed).code, 1008);
    });
    await t.step("with no auth message within 5 seconds", async () => {
      const client = new Client(`${wsOrigin}/v1/ws`);
      assert.equal(await client.opened, true);
      const started = Date.now();
      assert.equal((await client.closed).code, 1008);
      assert.ok(Date.now() - started >= 4_000, "not closed before the deadline");
    });
    await t.step("with a forged ticket (no upgrade)", async () => {
      const client = new Client(`${wsOrigin}/v1/ws?ticket=forged.ticket.x`);
      assert.equal(await client.opened, false);
      const response = await service.request("/v1/ws?ticket=forged.ticket.x", {
        headers: { Upgrade: "websocket" },
      });
      assert.equal(response.status, 401);
    });
  });
});

Deno.test("GET /v1/ws answers not_found for another owner's job", async () => {
  await withServer(async (service, wsOrigin) => {
    const alice = await service.token("alice");
    const { body } = await submitJob(service, alice);
    const client = new Client(`${wsOrigin}/v1/ws`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "auth", token: await service.token("bob") });
      client.send({ type: "subscribe", id: body.id });
      let message = await client.next();
      while (message.type !== "error") {
        assert.notEqual(message.type, "notification");
        message = await client.next();
      }
      assert.equal(message.code, "not_found");
      assert.equal(typeof message.message, "string");
    } finally {
      await client.close();
    }
  });
});

Deno.test("GET /v1/ws refuses a cross-origin browser unless CORS_ORIGINS allows it", async (t) => {
  await t.step("an unlisted origin gets 403 and no upgrade", async () => {
    await withServer(async (service, wsOrigin) => {
      const headers = { Origin: "https://evil.example", Upgrade: "websocket" };
      const response = await service.request("/v1/ws", { headers });
      assert.equal(response.status, 403);
      assert.ok((await response.json()).error);
      const client = new Client(`${wsOrigin}/v1/ws`, { Origin: "https://evil.example" });
      assert.equal(await client.opened, false);
    });
  });
  await t.step("a listed origin may connect", async () => {
    await withServer(async (service, wsOrigin) => {
      const token = await service.token("alice");
      const { body } = await submitJob(service, token);
      const client = new Client(`${wsOrigin}${body.urls.websocket}`, {
        Origin: "https://app.example",
      });
      try {
        assert.equal(await client.opened, true);
        client.send({ type: "subscribe", id: body.id });
        const byJob = await client.notifications([body.id]);
        assert.equal(byJob.get(body.id)!.at(-1).notification.type, "succeeded");
      } finally {
        await client.close();
      }
    }, { CORS_ORIGINS: "https://other.example, https://app.example" });
  });
});

Deno.test("GET /v1/ws replays only the events after last_event_id", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    await waitForStatus(service, token, body.id, ["succeeded"]);
    const first = new Client(`${wsOrigin}${body.urls.websocket}`);
    let all: Message[];
    try {
      assert.equal(await first.opened, true);
      first.send({ type: "subscribe", id: body.id });
      all = (await first.notifications([body.id])).get(body.id)!;
    } finally {
      await first.close();
    }
    assert.equal(all.length, 3);
    const second = new Client(`${wsOrigin}${body.urls.websocket}`);
    try {
      assert.equal(await second.opened, true);
      second.send({ type: "subscribe", id: body.id, last_event_id: all[0].event_id });
      const rest = (await second.notifications([body.id])).get(body.id)!;
      assert.deepEqual(rest.map((m) => m.event_id), [all[1].event_id, all[2].event_id]);
      assert.deepEqual(typesOf(rest, body.id), ["started", "succeeded"]);
    } finally {
      await second.close();
    }
  });
});

Deno.test("GET /v1/ws closes with 1008 when the bearer token expires mid-session", async () => {
  await withServer(async (service, wsOrigin) => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await service.token("short-lived", { expiresIn: exp });
    const client = new Client(`${wsOrigin}/v1/ws`);
    assert.equal(await client.opened, true);
    client.send({ type: "auth", token });
    assert.equal((await client.next()).type, "authenticated");
    const closed = await client.closed;
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /expired/i);
  });
});

Deno.test("GET /v1/ws holds each owner to MAX_STREAMS_PER_OWNER open sockets", async () => {
  await withServer(async (service, wsOrigin) => {
    const token = await service.token("crowd");
    const first = new Client(`${wsOrigin}/v1/ws`);
    assert.equal(await first.opened, true);
    first.send({ type: "auth", token });
    assert.equal((await first.next()).type, "authenticated");
    const second = new Client(`${wsOrigin}/v1/ws`);
    assert.equal(await second.opened, true);
    second.send({ type: "auth", token });
    assert.equal((await second.closed).code, 1013);
    await first.close();
  }, { MAX_STREAMS_PER_OWNER: "1" });
});
