/** Tests of `{"type":"subscribe_all"}` on GET /v1/ws: every job of the owner on one socket. */
import assert from "node:assert/strict";
import { Client, type Message } from "../support/ws_client.ts";
import {
  countingProvider,
  serveTestService,
  startTestService,
  submitJob,
  type TestService,
  until,
  waitForStatus,
} from "../support/app.ts";

async function withServer(
  fn: (service: TestService, wsOrigin: string) => Promise<void>,
  env: Record<string, string> = {},
  provider = countingProvider({ latencyMs: 20 }),
): Promise<void> {
  const service = await startTestService({ provider, env });
  const server = serveTestService(service);
  try {
    await fn(service, server.wsOrigin);
  } finally {
    await service.close();
    await server.close();
  }
}

/** A socket authenticated as `token` that asked for every job (from `cursor`, when given). */
async function subscribedAll(wsOrigin: string, token: string, cursor?: string): Promise<Client> {
  const client = new Client(`${wsOrigin}/v1/ws`);
  assert.equal(await client.opened, true);
  // Sent at once after auth: the socket handles its messages in order.
  client.send({ type: "auth", token });
  client.send(cursor ? { type: "subscribe_all", cursor } : { type: "subscribe_all" });
  assert.equal((await client.next()).type, "authenticated");
  return client;
}

/** The next `count` notifications, checking each carries a cursor; other messages fail the test. */
async function notifications(client: Client, count: number): Promise<Message[]> {
  const messages: Message[] = [];
  while (messages.length < count) {
    const message = await client.next();
    assert.equal(message.type, "notification", JSON.stringify(message));
    assert.deepEqual(Object.keys(message).sort(), ["cursor", "event_id", "notification", "type"]);
    messages.push(message);
  }
  return messages;
}

/** `id type` lines of the messages grouped by job, in the order of `ids`. */
function byJob(messages: Message[], ids: string[]): string[] {
  const lines = messages.map((m) => `${m.notification.id} ${m.notification.type}`);
  return ids.flatMap((id) => lines.filter((line) => line.startsWith(`${id} `)));
}

function lifecycles(ids: string[]): string[] {
  return ids.flatMap((id) => ["queued", "started", "succeeded"].map((type) => `${id} ${type}`));
}

Deno.test("GET /v1/ws subscribe_all delivers every job of the owner, in order, and only theirs", async () => {
  await withServer(async (service, wsOrigin) => {
    const alice = await service.token("alice");
    const bob = await service.token("bob");
    const client = await subscribedAll(wsOrigin, alice);
    try {
      await submitJob(service, bob);
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await submitJob(service, alice)).body.id);
      const messages = await notifications(client, 9);
      assert.deepEqual(byJob(messages, ids), lifecycles(ids));
      for (const id of ids) {
        const ofJob = messages.filter((m) => m.notification.id === id);
        const eventIds = ofJob.map((m) => Number(m.event_id));
        assert.ok(eventIds.every((e, i) => i === 0 || e > eventIds[i - 1]), `ids ${eventIds}`);
      }
      const last = messages.find((m) => m.notification.type === "succeeded");
      assert.match(last.notification.data.image, /^data:image\/png;base64,/);
      assert.equal(new Set(messages.map((m) => m.cursor)).size, 9, "every cursor differs");
    } finally {
      await client.close();
    }
    await until(() => service.runtime.relay!.size === 0, "the subscription to end");
  });
});

Deno.test("GET /v1/ws subscribe_all resumes from a cursor, or sends reset when it cannot", async (t) => {
  await withServer(async (service, wsOrigin) => {
    const alice = await service.token("alice");
    const first = await subscribedAll(wsOrigin, alice);
    const early = (await submitJob(service, alice)).body.id;
    const seen = await notifications(first, 3);
    await first.close();
    const missed = [(await submitJob(service, alice)).body.id];
    await waitForStatus(service, alice, missed[0], ["succeeded"]);
    await t.step("from the last cursor: only the missed events, then live", async () => {
      const client = await subscribedAll(wsOrigin, alice, seen[2].cursor);
      try {
        assert.deepEqual(byJob(await notifications(client, 3), missed), lifecycles(missed));
        const live = (await submitJob(service, alice)).body.id;
        assert.deepEqual(byJob(await notifications(client, 3), [live]), lifecycles([live]));
        assert.notEqual(live, early);
      } finally {
        await client.close();
      }
    });
    await t.step("from a cursor out of reach: reset, then live", async () => {
      const client = await subscribedAll(wsOrigin, alice, "not-a-cursor");
      try {
        assert.deepEqual(await client.next(), { type: "reset" });
        const live = (await submitJob(service, alice)).body.id;
        assert.deepEqual(byJob(await notifications(client, 3), [live]), lifecycles([live]));
      } finally {
        await client.close();
      }
    });
  });
});

Deno.test("GET /v1/ws refuses subscribe_all on a ticket socket", async () => {
  await withServer(async (service, wsOrigin) => {
    const alice = await service.token("alice");
    const { body } = await submitJob(service, alice);
    const client = new Client(`${wsOrigin}${body.urls.websocket}`);
    try {
      assert.equal(await client.opened, true);
      client.send({ type: "subscribe_all" });
      const refused = await client.next();
      assert.equal(refused.type, "error");
      assert.equal(refused.code, "unauthorized");
      assert.match(refused.message, /^Cannot subscribe to all jobs: /);
      assert.equal(service.runtime.relay!.size, 0);
    } finally {
      await client.close();
    }
  });
});

Deno.test("GET /v1/ws counts subscribe_all as one subscription, and unsubscribe_all ends it", async () => {
  const gate = Promise.withResolvers<void>();
  try {
    await withServer(
      async (service, wsOrigin) => {
        const alice = await service.token("alice");
        const ids = [];
        for (let i = 0; i < 2; i++) ids.push((await submitJob(service, alice)).body.id);
        const client = await subscribedAll(wsOrigin, alice);
        const relay = service.runtime.relay!;
        try {
          client.send({ type: "subscribe_all" }); // a second one changes nothing
          client.send({ type: "subscribe", id: ids[0] });
          client.send({ type: "subscribe", id: ids[1] });
          let message: Message;
          do message = await client.next(); while (message.type !== "error");
          assert.equal(message.code, "rate_limited");
          assert.equal(message.id, ids[1]);
          assert.equal(relay.size, 2, "subscribe_all and one job");
          client.send({ type: "unsubscribe_all" });
          await until(() => relay.size === 1, "unsubscribe_all to end it");
          client.send({ type: "subscribe", id: ids[1] });
          await until(() => relay.size === 2, "the freed place to be taken");
        } finally {
          await client.close();
        }
      },
      { WS_MAX_SUBSCRIPTIONS: "2" },
      countingProvider({ gate: gate.promise }),
    );
  } finally {
    gate.resolve();
  }
});
