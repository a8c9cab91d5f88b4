/** What the relay reads for events the feed shows: nothing but a success's image, unless it sees a gap. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { StoredEvent } from "../../../lib/live/notifications.ts";
import { createMemoryBroker } from "../../../lib/queue/memory.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { Relay } from "../../../lib/live/relay.ts";

const log = getLogger(["imagejobs", "test"]);
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";

/** The broker, counting the reads of whole logs and of images. */
function counting(broker: Broker) {
  const reads = { history: 0, image: 0 };
  const wrapped = new Proxy(broker, {
    get(target, name, receiver) {
      if (name === "history" || name === "image") reads[name]++;
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { broker: wrapped, reads };
}

async function subscribed(relay: Relay, id: string) {
  const seen: StoredEvent[] = [];
  const ended = Promise.withResolvers<string>();
  await relay.subscribe(id, { event: (e) => seen.push(e), done: ended.resolve });
  return { seen, ended: ended.promise };
}

Deno.test("a success on the feed costs one image read, not a read of the job's log", async () => {
  const memory = createMemoryBroker();
  const { broker, reads } = counting(memory);
  const relay = new Relay({ broker, log, blockMs: 50 });
  await relay.start();
  try {
    await memory.submit({ id: "fox", owner: "ann", prompt: "a fox" });
    const { seen, ended } = await subscribed(relay, "fox");
    const [delivery] = await memory.claim("w", 1, { blockMs: 1000 });
    await memory.start(delivery);
    const image = Uint8Array.fromBase64(PNG);
    await memory.finish(delivery, { type: "succeeded", image, mimeType: "image/png" });
    assert.equal(await ended, "terminal");
    assert.deepEqual(seen.map((e) => e.notification.type), ["queued", "started", "succeeded"]);
    const success = seen[2];
    assert.equal(
      success.notification.type === "succeeded" && success.notification.data.image,
      `data:image/png;base64,${PNG}`,
    );
    assert.deepEqual(reads, { history: 1, image: 1 }, "the subscribe's read, then the image alone");
  } finally {
    await relay.close();
    await memory.close();
  }
});

Deno.test("a failure on the feed ends its subscriptions at once, with no read", async () => {
  const memory = createMemoryBroker();
  const { broker, reads } = counting(memory);
  const relay = new Relay({ broker, log, blockMs: 50 });
  await relay.start();
  try {
    await memory.submit({ id: "fox", owner: "ann", prompt: "a fox" });
    const { seen, ended } = await subscribed(relay, "fox");
    const [delivery] = await memory.claim("w", 1, { blockMs: 1000 });
    await memory.start(delivery);
    await memory.finish(delivery, { type: "failed", error: "no" });
    assert.equal(await ended, "terminal");
    assert.deepEqual(seen.map((e) => e.notification.type), ["queued", "started", "failed"]);
    assert.equal(relay.size, 0);
    assert.deepEqual(reads, { history: 1, image: 0 });
  } finally {
    await relay.close();
    await memory.close();
  }
});
