import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Registry } from "prom-client";
import {
  seedNotice,
  socketIoCounters,
  SocketIoNotifier,
  type SocketIoNotifierOptions,
} from "../../../lib/live/socket_io_bridge.ts";
import { until } from "../../support/app.ts";
import {
  freePort,
  refuseFirstAttempt,
  startSocketIoServer,
} from "../../support/socket_io_server.ts";

const log = getLogger(["test", "socket_io_bridge"]);
const PNG = "iVBORw0KGgo=";

/** A notifier with test settings and counted hooks. */
function notifier(url: string, options: Partial<SocketIoNotifierOptions> = {}) {
  const counts = { emitted: 0, dropped: 0 };
  const bridge = new SocketIoNotifier({
    url,
    log,
    reconnectDelayMaxMs: 200,
    onEmitted: () => counts.emitted++,
    onDropped: () => counts.dropped++,
    ...options,
  });
  return { bridge, counts };
}

const failed = (error: string) => ({ type: "failed" as const, error });
/** The payload of a failure notice, as the server receives it. */
const failure = (Id: string, data = "Error processing job") => ({ Id, success: false, data });

Deno.test("seedNotice builds the seed's {Id, success, data} for each terminal outcome", () => {
  const bytes = Uint8Array.fromBase64(PNG);
  assert.deepEqual(seedNotice("a", { type: "succeeded", mimeType: "image/png", base64: PNG }), {
    Id: "a",
    success: true,
    data: { image: `data:image/png;base64,${PNG}` },
  });
  assert.deepEqual(seedNotice("b", { type: "succeeded", mimeType: "image/jpeg", image: bytes }), {
    Id: "b",
    success: true,
    data: { image: `data:image/jpeg;base64,${PNG}` },
  });
  assert.deepEqual(seedNotice("c", failed("Session expired. Please log in again")), {
    Id: "c",
    success: false,
    data: "Session expired. Please log in again",
  });
  assert.deepEqual(seedNotice("d", { type: "canceled", error: "Job canceled" }), {
    Id: "d",
    success: false,
    data: "Job canceled",
  });
});

Deno.test("SocketIoNotifier emits each notice exactly once in the seed's shape", async (t) => {
  await t.step("as the seed's `notify` event", async () => {
    const server = await startSocketIoServer();
    const { bridge, counts } = notifier(server.url);
    try {
      await until(() => bridge.connected, "the connection");
      bridge.notify("ok-1", { type: "succeeded", mimeType: "image/png", base64: PNG });
      bridge.notify("bad-1", failed("Error processing job"));
      bridge.notify("gone-1", { type: "canceled", error: "Job canceled" });
      // A last notice: once it arrives, everything emitted before it has arrived too (one ordered connection).
      bridge.notify("sentinel", failed("Error processing job"));
      const received = await server.waitFor(4);
      assert.deepEqual(received.map((r) => r.event), ["notify", "notify", "notify", "notify"]);
      assert.deepEqual(received.map((r) => r.payload), [
        { Id: "ok-1", success: true, data: { image: `data:image/png;base64,${PNG}` } },
        failure("bad-1"),
        failure("gone-1", "Job canceled"),
        failure("sentinel"),
      ]);
      assert.deepEqual(counts, { emitted: 4, dropped: 0 });
      assert.equal(server.connections, 1);
    } finally {
      await bridge.close();
      await server.close();
    }
  });

  await t.step("as a configured event name", async () => {
    const server = await startSocketIoServer({ events: ["notify", "job-done"] });
    const { bridge } = notifier(server.url, { event: "job-done" });
    try {
      bridge.notify("x", failed("Error processing job"));
      const [got] = await server.waitFor(1);
      assert.deepEqual(got, { event: "job-done", payload: failure("x") });
    } finally {
      await bridge.close();
      await server.close();
    }
  });
});

Deno.test("SocketIoNotifier.notify returns at once while the service is down and delivers once it is up", async () => {
  const port = freePort();
  const refused = refuseFirstAttempt(port);
  const { bridge, counts } = notifier(`http://127.0.0.1:${port}`);
  let server;
  try {
    const started = performance.now();
    for (let i = 0; i < 3; i++) bridge.notify(`down-${i}`, failed("Error processing job"));
    assert.ok(performance.now() - started < 50, "notify() must not wait for the connection");
    assert.equal(bridge.pending, 3);
    assert.deepEqual(counts, { emitted: 0, dropped: 0 });
    await refused;
    assert.equal(bridge.connected, false);
    server = await startSocketIoServer({ port });
    bridge.notify("sentinel", failed("Error processing job"));
    const received = await server.waitFor(4);
    assert.deepEqual(received.map((r) => r.payload), [
      failure("down-0"),
      failure("down-1"),
      failure("down-2"),
      failure("sentinel"),
    ]);
    assert.equal(bridge.pending, 0);
    assert.deepEqual(counts, { emitted: 4, dropped: 0 });
  } finally {
    await bridge.close();
    await server?.close();
  }
});

Deno.test("SocketIoNotifier drops the oldest notices when its buffer is full", async (t) => {
  await t.step("by count", async () => {
    const port = freePort();
    const refused = refuseFirstAttempt(port);
    const { bridge, counts } = notifier(`http://127.0.0.1:${port}`, { maxPending: 2 });
    let server;
    try {
      for (const id of ["a", "b", "c", "d"]) bridge.notify(id, failed("Error processing job"));
      assert.equal(bridge.pending, 2);
      assert.equal(counts.dropped, 2);
      await refused;
      server = await startSocketIoServer({ port });
      await until(() => bridge.connected, "the connection");
      bridge.notify("sentinel", failed("Error processing job"));
      const received = await server.waitFor(3);
      assert.deepEqual(received.map((r) => r.payload), [
        failure("c"),
        failure("d"),
        failure("sentinel"),
      ]);
      assert.deepEqual(counts, { emitted: 3, dropped: 2 });
    } finally {
      await bridge.close();
      await server?.close();
    }
  });

  await t.step("by size", async () => {
    const port = freePort();
    const image = "A".repeat(10_000);
    const { bridge, counts } = notifier(`http://127.0.0.1:${port}`, { maxPendingBytes: 25_000 });
    let server;
    try {
      for (const id of ["a", "b", "c"]) {
        bridge.notify(id, { type: "succeeded", mimeType: "image/png", base64: image });
      }
      assert.equal(bridge.pending, 2);
      assert.equal(counts.dropped, 1);
      server = await startSocketIoServer({ port });
      const received = await server.waitFor(2);
      assert.deepEqual(received.map((r) => (r.payload as { Id: string }).Id), ["b", "c"]);
    } finally {
      await bridge.close();
      await server?.close();
    }
  });
});

Deno.test("SocketIoNotifier reconnects by itself", async (t) => {
  await t.step("after the service restarts", async () => {
    let server = await startSocketIoServer();
    const port = server.port;
    const { bridge } = notifier(server.url);
    try {
      bridge.notify("before", failed("Error processing job"));
      await server.waitFor(1);
      await server.close();
      await until(() => !bridge.connected, "the disconnection");
      bridge.notify("while-down", failed("Error processing job"));
      assert.equal(bridge.pending, 1);
      server = await startSocketIoServer({ port });
      const received = await server.waitFor(1);
      assert.deepEqual(received.map((r) => r.payload), [failure("while-down")]);
    } finally {
      await bridge.close();
      await server.close();
    }
  });

  await t.step("after the server disconnects it", async () => {
    const server = await startSocketIoServer({
      onConnection: (socket, index) => {
        if (index === 1) socket.disconnect(true);
      },
    });
    const { bridge } = notifier(server.url);
    try {
      await server.waitForConnections(2);
      bridge.notify("after", failed("Error processing job"));
      const received = await server.waitFor(1);
      assert.deepEqual(received.map((r) => r.payload), [failure("after")]);
    } finally {
      await bridge.close();
      await server.close();
    }
  });
});

Deno.test("SocketIoNotifier.close closes the connection, is idempotent and ends notifying", async () => {
  const server = await startSocketIoServer();
  const { bridge, counts } = notifier(server.url);
  try {
    await until(() => bridge.connected, "the connection");
    const disconnected = server.nextDisconnect();
    const closing = bridge.close();
    assert.equal(bridge.close(), closing);
    await closing;
    assert.equal(await disconnected, "client namespace disconnect");
    assert.equal(bridge.connected, false);
    bridge.notify("late", failed("Error processing job"));
    assert.equal(bridge.pending, 0);
    assert.deepEqual(counts, { emitted: 0, dropped: 0 });
  } finally {
    await bridge.close();
    await server.close();
  }
});

Deno.test("SocketIoNotifier.close forgets what is pending while the service is down", async () => {
  const { bridge } = notifier(`http://127.0.0.1:${freePort()}`);
  bridge.notify("never", failed("Error processing job"));
  assert.equal(bridge.pending, 1);
  await bridge.close();
  assert.equal(bridge.pending, 0);
});

Deno.test("socketIoCounters counts emitted and dropped notices on the registry", async () => {
  const registry = new Registry();
  const hooks = socketIoCounters(registry);
  hooks.onEmitted!();
  hooks.onEmitted!();
  hooks.onDropped!();
  const text = await registry.metrics();
  assert.match(text, /socket_io_notifications_total\{result="emitted"\} 2/);
  assert.match(text, /socket_io_notifications_total\{result="dropped"\} 1/);
});

Deno.test("SocketIoNotifier refuses buffer bounds below 1", () => {
  assert.throws(
    () => new SocketIoNotifier({ url: "http://127.0.0.1:1", log, maxPending: 0 }),
    RangeError,
  );
});
