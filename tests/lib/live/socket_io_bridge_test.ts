import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { JOB_CANCELED, PROCESSING_ERROR } from "../../../lib/live/notifications.ts";
import { seedNotice } from "../../../lib/live/seed_notice.ts";
import {
  SocketIoNotifier,
  type SocketIoNotifierOptions,
} from "../../../lib/live/socket_io_bridge.ts";
import { createMemoryBroker, type MemoryBroker } from "../../../lib/queue/memory.ts";
import { until } from "../../support/app.ts";
import { freePort, startSocketIoServer } from "../../support/socket_io_server.ts";

const log = getLogger(["test", "socket_io_bridge"]);
const PNG = "iVBORw0KGgo=";

/** A notifier over `memory`'s outbox with test settings and counted hooks. */
function notifier(
  url: string,
  memory: MemoryBroker,
  options: Partial<SocketIoNotifierOptions> = {},
) {
  const counts = { emitted: 0, confirmed: 0, dropped: 0 };
  const bridge = new SocketIoNotifier({
    url,
    log,
    broker: { notices: memory.notices!, events: (id) => memory.events(id) },
    reconnectDelayMaxMs: 200,
    idleMs: 50,
    onEmitted: () => counts.emitted++,
    onConfirmed: () => counts.confirmed++,
    onDropped: () => counts.dropped++,
    ...options,
  });
  return { bridge, counts };
}

/** Ends three jobs (succeeded, failed, canceled); returns their ids and last event ids. */
async function endThree(memory: MemoryBroker) {
  const ids = ["ok", "bad", "gone"].map((name) => `${name}-${crypto.randomUUID().slice(0, 6)}`);
  for (const id of ids) await memory.submit({ id, owner: "alice", prompt: "p" });
  for (
    const [id, outcome] of [
      [ids[0], { type: "succeeded", image: Uint8Array.fromBase64(PNG), mimeType: "image/png" }],
      [ids[1], { type: "failed", error: PROCESSING_ERROR }],
    ] as const
  ) {
    const [delivery] = await memory.claim("c1", 1, { blockMs: 0 });
    assert.equal(delivery.jobId, id);
    await memory.start(delivery);
    assert.ok(await memory.finish(delivery, outcome));
  }
  assert.equal(await memory.cancel(ids[2]), "canceled");
  const last = async (id: string) => (await memory.events(id)).at(-1)!.eventId;
  return { ids, eventIds: await Promise.all(ids.map(last)) };
}

Deno.test("seedNotice builds the seed's {Id, success, data} from each terminal notification", () => {
  const at = new Date().toISOString();
  const image = `data:image/png;base64,${PNG}`;
  const data = { image, mime_type: "image/png", images: [] };
  assert.deepEqual(seedNotice({ id: "a", at, type: "succeeded", success: true, data }), {
    Id: "a",
    success: true,
    data: { image },
  });
  const failed = { id: "b", at, type: "failed", success: false, error: PROCESSING_ERROR } as const;
  assert.deepEqual(seedNotice(failed), { Id: "b", success: false, data: PROCESSING_ERROR });
  const canceled = { id: "c", at, type: "canceled", success: false, error: JOB_CANCELED } as const;
  assert.deepEqual(seedNotice(canceled), { Id: "c", success: false, data: JOB_CANCELED });
  assert.throws(() => seedNotice({ id: "d", at, type: "queued", success: true }), RangeError);
});

Deno.test("SocketIoNotifier emits each job end with its event id and forgets it once acknowledged", async () => {
  const memory = createMemoryBroker({ notices: true });
  const server = await startSocketIoServer({ ack: true });
  const { bridge, counts } = notifier(server.url, memory);
  try {
    const { ids, eventIds } = await endThree(memory);
    bridge.start();
    const received = await server.waitFor(3);
    const byId = new Map(received.map((r) => [(r.payload as { Id: string }).Id, r]));
    assert.deepEqual(byId.get(ids[0]), {
      event: "notify",
      payload: { Id: ids[0], success: true, data: { image: `data:image/png;base64,${PNG}` } },
      meta: { event_id: eventIds[0] },
    });
    assert.deepEqual(byId.get(ids[1])?.payload, {
      Id: ids[1],
      success: false,
      data: PROCESSING_ERROR,
    });
    assert.deepEqual(byId.get(ids[2])?.payload, { Id: ids[2], success: false, data: JOB_CANCELED });
    assert.deepEqual(ids.map((id) => byId.get(id)?.meta), eventIds.map((id) => ({ event_id: id })));
    await until(() => memory.notices!.size === 0, "the outbox emptied by the acknowledgements");
    assert.deepEqual(counts, { emitted: 3, confirmed: 3, dropped: 0 });
  } finally {
    await bridge.close();
    await server.close();
  }
});

Deno.test("SocketIoNotifier keeps a notice the peer never acknowledged until the server's second ping", async (t) => {
  await t.step("no ping yet: the notice stays in the outbox", async () => {
    const memory = createMemoryBroker({ notices: true });
    const server = await startSocketIoServer({ pingIntervalMs: 600_000 });
    const { bridge, counts } = notifier(server.url, memory);
    try {
      await endThree(memory);
      bridge.start();
      await server.waitFor(3);
      await until(() => counts.emitted === 3, "3 emits counted");
      assert.equal(bridge.unconfirmed, 3);
      assert.equal(memory.notices!.size, 3);
      assert.equal(counts.confirmed, 0);
    } finally {
      await bridge.close();
      await server.close();
    }
  });
  await t.step("one ping is not enough, the second is", async () => {
    const memory = createMemoryBroker({ notices: true });
    let conn: {
      sendPacket(type: string): void;
      on(e: string, f: (p: { type: string }) => void): void;
    } | undefined;
    const pongs: unknown[] = [];
    const server = await startSocketIoServer({
      pingIntervalMs: 600_000,
      onConnection: (socket) => {
        conn = socket.conn as unknown as typeof conn;
        conn!.on("packet", (packet) => {
          if (packet.type === "pong") pongs.push(packet);
        });
      },
    });
    const { bridge, counts } = notifier(server.url, memory);
    try {
      await endThree(memory);
      bridge.start();
      await server.waitFor(3);
      // A ping by hand; once its pong is back, the client has handled it.
      conn!.sendPacket("ping");
      await until(() => pongs.length === 1, "the first pong");
      assert.equal(bridge.unconfirmed, 3);
      assert.equal(memory.notices!.size, 3);
      conn!.sendPacket("ping");
      await until(() => pongs.length === 2, "the second pong");
      await until(() => memory.notices!.size === 0, "the outbox emptied by the second ping");
      assert.deepEqual(counts, { emitted: 3, confirmed: 3, dropped: 0 });
    } finally {
      await bridge.close();
      await server.close();
    }
  });
  await t.step("pings: confirmed and forgotten", async () => {
    const memory = createMemoryBroker({ notices: true });
    const server = await startSocketIoServer({ pingIntervalMs: 100 });
    const { bridge, counts } = notifier(server.url, memory);
    try {
      await endThree(memory);
      bridge.start();
      await server.waitFor(3);
      await until(() => memory.notices!.size === 0, "the outbox emptied by the pings");
      assert.deepEqual(counts, { emitted: 3, confirmed: 3, dropped: 0 });
      assert.equal(server.received.length, 3);
    } finally {
      await bridge.close();
      await server.close();
    }
  });
});

Deno.test("SocketIoNotifier emits again, with the same event id, what a dropped link left unconfirmed", async () => {
  const memory = createMemoryBroker({ notices: true });
  let first: { disconnect(close?: boolean): void } | undefined;
  // The first connection loses everything (a link that died on the way), and no ping confirms it.
  const server = await startSocketIoServer({
    pingIntervalMs: 600_000,
    keep: (index) => index > 1,
    onConnection: (socket, index) => {
      if (index === 1) first = socket;
    },
  });
  const { bridge, counts } = notifier(server.url, memory);
  try {
    const { ids, eventIds } = await endThree(memory);
    bridge.start();
    await until(() => counts.emitted === 3, "3 emits on the first connection");
    assert.equal(server.received.length, 0);
    first!.disconnect(true);
    const received = await server.waitFor(3);
    const meta = new Map(received.map((r) => [(r.payload as { Id: string }).Id, r.meta]));
    assert.deepEqual(ids.map((id) => meta.get(id)), eventIds.map((id) => ({ event_id: id })));
    assert.equal(counts.emitted, 6);
    assert.equal(memory.notices!.size, 3, "still unconfirmed on the second connection");
  } finally {
    await bridge.close();
    await server.close();
  }
});

Deno.test("SocketIoNotifier holds notices in the outbox while the service is down", async () => {
  const memory = createMemoryBroker({ notices: true });
  const port = freePort();
  const { bridge, counts } = notifier(`http://127.0.0.1:${port}`, memory);
  let server;
  try {
    bridge.start();
    const { ids } = await endThree(memory);
    assert.equal(bridge.connected, false);
    assert.equal(memory.notices!.size, 3);
    assert.equal(counts.emitted, 0);
    server = await startSocketIoServer({ port, ack: true });
    const received = await server.waitFor(3);
    assert.deepEqual(received.map((r) => (r.payload as { Id: string }).Id).sort(), ids.sort());
    await until(() => memory.notices!.size === 0, "the outbox emptied");
  } finally {
    await bridge.close();
    await server?.close();
  }
});

Deno.test("SocketIoNotifier.close gives unconfirmed notices back and is idempotent", async () => {
  const memory = createMemoryBroker({ notices: true });
  const server = await startSocketIoServer({ pingIntervalMs: 600_000 });
  const { bridge, counts } = notifier(server.url, memory);
  const { ids } = await endThree(memory);
  bridge.start();
  await server.waitFor(3);
  const closing = bridge.close();
  assert.equal(bridge.close(), closing);
  await closing;
  assert.equal(bridge.connected, false);
  // Due again at once, their attempt counted: the next process emits them.
  const back = await memory.notices!.take(Date.now(), 10, 60_000);
  assert.deepEqual(back.map((t) => [t.jobId, t.attempt]).sort(), ids.map((id) => [id, 1]).sort());
  assert.equal(counts.emitted, 3);
  await server.close();
});

Deno.test("SocketIoNotifier drops and counts the notice of a job that expired first", async (t) => {
  /** A broker whose one notice belongs to a job that has just expired, and its clock. */
  async function expired() {
    const time = { now: Date.now() };
    const memory = createMemoryBroker({ ttlSec: 60, now: () => time.now, notices: true });
    await memory.submit({ id: "old", owner: "alice", prompt: "p" });
    await memory.cancel("old");
    time.now += 61_000;
    return { memory, time };
  }
  await t.step("when the service is up", async () => {
    const { memory, time } = await expired();
    const server = await startSocketIoServer({ ack: true });
    const { bridge, counts } = notifier(server.url, memory, { clock: () => time.now });
    try {
      bridge.start();
      await until(() => counts.dropped === 1, "the drop");
      assert.equal(memory.notices!.size, 0);
      assert.equal(server.received.length, 0);
    } finally {
      await bridge.close();
      await server.close();
    }
  });
  await t.step("while the service is away: the outbox stays bounded", async () => {
    const { memory, time } = await expired();
    await memory.submit({ id: "young", owner: "alice", prompt: "p" });
    await memory.cancel("young"); // ended now: its notice is kept
    const url = `http://127.0.0.1:${freePort()}`;
    const { bridge, counts } = notifier(url, memory, { clock: () => time.now, maxAgeMs: 60_000 });
    try {
      bridge.start();
      await until(() => counts.dropped === 1, "the drop");
      assert.equal(bridge.connected, false);
      const [left, ...none] = await memory.notices!.take(time.now, 10, 60_000);
      assert.deepEqual([left.jobId, none], ["young", []]);
    } finally {
      await bridge.close();
    }
  });
});
