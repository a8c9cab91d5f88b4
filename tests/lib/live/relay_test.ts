/** The relay's own guarantees, on the in-memory broker. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { StoredEvent } from "../../../lib/live/notifications.ts";
import { createMemoryBroker } from "../../../lib/queue/memory.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { Relay } from "../../../lib/live/relay.ts";
import { vanishingBroker } from "../../support/app.ts";

const log = getLogger(["imagejobs", "test"]);
const SUCCESS = {
  type: "succeeded",
  image: Uint8Array.fromBase64(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC",
  ),
  mimeType: "image/png",
} as const;

/** A broker whose relay feed never shows anything, as if every item were trimmed before it was read. */
function deafFeed(broker: Broker): Broker {
  return new Proxy(broker, {
    get(target, name, receiver) {
      if (name === "tail") {
        return (cursor: string | null, options: { blockMs: number; signal?: AbortSignal }) =>
          target.tail(cursor, { ...options, blockMs: Math.min(options.blockMs, 50) })
            .then(({ cursor }) => ({ cursor, items: [] }));
      }
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("a subscriber gets a terminal event the feed never showed, at the next resync", async () => {
  const broker = createMemoryBroker();
  const relay = new Relay({ broker: deafFeed(broker), log, blockMs: 50, resyncMs: 100 });
  await relay.start();
  try {
    await broker.submit({ id: "lost", owner: "ann", prompt: "a fox" });
    const seen: StoredEvent[] = [];
    const ended = Promise.withResolvers<string>();
    await relay.subscribe("lost", { event: (e) => seen.push(e), done: ended.resolve });
    const [delivery] = await broker.claim("w", 1, { blockMs: 1000 });
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<string>((resolve) =>
      timer = setTimeout(() => resolve("timeout"), 5_000)
    );
    assert.equal(await Promise.race([ended.promise, timeout]), "terminal");
    clearTimeout(timer);
    assert.deepEqual(seen.map((e) => e.notification.type), ["queued", "started", "succeeded"]);
    assert.deepEqual(
      seen.map((e) => e.eventId),
      (await broker.events("lost")).map((e) => e.eventId),
    );
  } finally {
    await relay.close();
    await broker.close();
  }
});

Deno.test("a subscription with an owner refuses anyone else's job as not found", async () => {
  const broker = createMemoryBroker();
  const relay = new Relay({ broker, log });
  await relay.start();
  try {
    await broker.submit({ id: "mine", owner: "ann", prompt: "a fox" });
    const sink = { event: () => assert.fail("no event may reach another owner") };
    await assert.rejects(relay.subscribe("mine", sink, undefined, { owner: "bob" }), /no such job/);
    await assert.rejects(
      relay.subscribe("missing", sink, undefined, { owner: "bob" }),
      /no such job/,
    );
    assert.equal(relay.size, 0);
  } finally {
    await relay.close();
    await broker.close();
  }
});

Deno.test("a subscriber of a job that disappears ends as gone at the next periodic read", async () => {
  const memory = createMemoryBroker();
  const { broker, forget } = vanishingBroker(memory);
  const relay = new Relay({ broker, log, resyncMs: 50 });
  await relay.start();
  try {
    await memory.submit({ id: "fleeting", owner: "ann", prompt: "a fox" });
    const seen: string[] = [];
    const ended = Promise.withResolvers<string>();
    await relay.subscribe(
      "fleeting",
      {
        event: (e) => seen.push(e.notification.type),
        done: ended.resolve,
      },
      undefined,
      { owner: "ann" },
    );
    assert.equal(relay.size, 1);
    forget("fleeting");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<string>((resolve) =>
      timer = setTimeout(() => resolve("still open"), 5_000)
    );
    assert.equal(await Promise.race([ended.promise, timeout]), "gone");
    clearTimeout(timer);
    assert.deepEqual(seen, ["queued"]);
    assert.equal(relay.size, 0);
  } finally {
    await relay.close();
    await memory.close();
  }
});
