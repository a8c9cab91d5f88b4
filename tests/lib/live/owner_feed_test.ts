/** The relay's streams of all of an owner's jobs, on the in-memory broker. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { BrokerUnavailableError } from "../../../lib/errors.ts";
import { OwnerFeeds } from "../../../lib/live/owner_feed.ts";
import { type OwnerEvent, Relay } from "../../../lib/live/relay.ts";
import { createMemoryBroker } from "../../../lib/queue/memory.ts";
import type { Broker, FeedItem } from "../../../lib/queue/types.ts";
import { compareEventIds } from "../../../lib/live/notifications.ts";
import { until } from "../../support/app.ts";

const log = getLogger(["imagejobs", "test"]);
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";
const SUCCESS = {
  type: "succeeded",
  image: Uint8Array.fromBase64(PNG),
  mimeType: "image/png",
} as const;

/** A broker whose calls named in `hooks` go through them first (to count, hold or fail them). */
function hooked(
  broker: Broker,
  hooks: Partial<Record<keyof Broker, (...args: never[]) => unknown>>,
) {
  return new Proxy(broker, {
    get(target, name, receiver) {
      const hook = hooks[name as keyof Broker];
      if (hook) return hook;
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Runs one queued job through claim, start and a successful finish. */
async function succeed(broker: Broker): Promise<void> {
  const [delivery] = await broker.claim("w", 1, { blockMs: 1000 });
  await broker.start(delivery);
  await broker.finish(delivery, SUCCESS);
}

/** A subscriber that records `id type` lines (and images) and can be told to fail. */
function recorder() {
  const lines: string[] = [];
  const events: OwnerEvent[] = [];
  const ends: string[] = [];
  let resets = 0;
  return {
    lines,
    events,
    ends,
    get resets() {
      return resets;
    },
    event(event: OwnerEvent) {
      events.push(event);
      lines.push(`${event.jobId} ${event.event.notification.type}`);
    },
    reset: () => void resets++,
    done: (reason: string) => void ends.push(reason),
  };
}

async function withRelay(
  broker: Broker,
  fn: (relay: Relay) => Promise<void>,
): Promise<void> {
  const relay = new Relay({ broker, log, blockMs: 100 });
  await relay.start();
  try {
    await fn(relay);
  } finally {
    await relay.close();
  }
}

Deno.test("one image read serves every stream of the owner and the job's own subscriber", async () => {
  const memory = createMemoryBroker();
  let reads = 0;
  const broker = hooked(memory, {
    image: (id: string) => (reads++, memory.image(id)),
  });
  await withRelay(broker, async (relay) => {
    const streams = [recorder(), recorder(), recorder()];
    for (const stream of streams) relay.subscribeOwner("ann", stream);
    await memory.submit({ id: "fox", owner: "ann", prompt: "a fox" });
    const job: string[] = [];
    await relay.subscribe("fox", { event: (e) => job.push(e.notification.type) });
    await succeed(memory);
    await until(() => streams.every((s) => s.lines.length === 3) && job.length === 3, "events");
    assert.equal(reads, 1, "one read of the image");
    for (const stream of streams) {
      assert.deepEqual(stream.lines, ["fox queued", "fox started", "fox succeeded"]);
      const success = stream.events[2].event.notification;
      assert.equal(
        success.type === "succeeded" && success.data.image,
        `data:image/png;base64,${PNG}`,
      );
    }
  });
  await memory.close();
});

Deno.test("a slow image read holds back its own owner's stream only, in order", async () => {
  const memory = createMemoryBroker();
  const gate = Promise.withResolvers<void>();
  const broker = hooked(memory, {
    image: async (id: string) => {
      if (id === "slow") await gate.promise;
      return await memory.image(id);
    },
  });
  await withRelay(broker, async (relay) => {
    const ann = recorder();
    const bob = recorder();
    relay.subscribeOwner("ann", ann);
    relay.subscribeOwner("bob", bob);
    await memory.submit({ id: "slow", owner: "ann", prompt: "a" });
    await succeed(memory);
    await memory.submit({ id: "quick", owner: "bob", prompt: "c" });
    await memory.submit({ id: "next", owner: "ann", prompt: "b" });
    await succeed(memory);
    await until(() => bob.lines.length === 3, "bob's events");
    assert.deepEqual(bob.lines, ["quick queued", "quick started", "quick succeeded"]);
    assert.deepEqual(ann.lines, ["slow queued", "slow started"], "ann waits for the image");
    gate.resolve();
    await until(() => ann.lines.length === 4, "ann's events");
    assert.deepEqual(ann.lines, ["slow queued", "slow started", "slow succeeded", "next queued"]);
  });
  await memory.close();
});

Deno.test("a resumed stream gets the replay, then the live events held meanwhile, each once", async () => {
  const memory = createMemoryBroker();
  const gate = Promise.withResolvers<void>();
  const broker = hooked(memory, {
    replay: async (cursor: string, limit: number) => {
      await gate.promise;
      return await memory.replay(cursor, limit);
    },
  });
  await withRelay(broker, async (relay) => {
    const first = recorder();
    const firstSub = relay.subscribeOwner("ann", first);
    await memory.submit({ id: "one", owner: "ann", prompt: "a" });
    await until(() => first.lines.length === 1, "the first event");
    firstSub.close();
    await memory.submit({ id: "two", owner: "ann", prompt: "b" });
    const resumed = recorder();
    relay.subscribeOwner("ann", resumed, first.events[0].cursor);
    // Live events while the replay waits: held, and also in the replay once it runs.
    await memory.submit({ id: "three", owner: "bob", prompt: "c" });
    await memory.submit({ id: "four", owner: "ann", prompt: "d" });
    await succeed(memory);
    const watcher = recorder();
    relay.subscribeOwner("ann", watcher);
    await memory.submit({ id: "five", owner: "ann", prompt: "e" });
    // (It may see the success too, when the relay had not read it yet as it subscribed.)
    await until(() => watcher.lines.includes("five queued"), "the live event");
    assert.deepEqual(resumed.lines, [], "nothing before the replay");
    gate.resolve();
    await until(() => resumed.lines.length === 5, "the replay and the held events");
    assert.deepEqual(resumed.lines, [
      "two queued",
      "four queued",
      "one started",
      "one succeeded",
      "five queued",
    ]);
    assert.equal(new Set(resumed.events.map((e) => e.cursor)).size, 5);
    assert.equal(resumed.resets, 0);
  });
  await memory.close();
});

Deno.test("a replay that cannot reach back resets, a failing store ends the stream", async (t) => {
  const memory = createMemoryBroker();
  await t.step("null from the broker: reset, then live", async () => {
    await withRelay(memory, async (relay) => {
      const stream = recorder();
      relay.subscribeOwner("ann", stream, "not-a-cursor");
      await until(() => stream.resets === 1, "the reset");
      await memory.submit({ id: "r1", owner: "ann", prompt: "a" });
      await until(() => stream.lines.length === 1, "the live event");
    });
  });
  await t.step("the store away: the stream ends, to be resumed later", async () => {
    const broker = hooked(memory, {
      replay: () => Promise.reject(new BrokerUnavailableError("down")),
    });
    await withRelay(broker, async (relay) => {
      const stream = recorder();
      relay.subscribeOwner("ann", stream, "1");
      await until(() => stream.ends.length === 1, "the end");
      assert.deepEqual(stream.ends, ["closed"]);
      assert.equal(stream.resets, 0);
      assert.equal(relay.size, 0);
    });
  });
  await t.step("a broker error about the cursor: reset", async () => {
    const broker = hooked(memory, {
      replay: () => Promise.reject(new RangeError("Cannot read the feed: bad cursor")),
    });
    await withRelay(broker, async (relay) => {
      const stream = recorder();
      relay.subscribeOwner("ann", stream, "1");
      await until(() => stream.resets === 1, "the reset");
      assert.deepEqual(stream.ends, []);
    });
  });
  await memory.close();
});

/** A feed item of `owner`'s job `jobId` on `partition` at feed id `cursor`. */
function feedItem(owner: string, jobId: string, partition: number, cursor: string): FeedItem {
  const notification = { id: jobId, type: "queued" as const, success: true as const, at: "x" };
  return { jobId, owner, cursor, partition, eventId: "1", previousId: "0", notification };
}

/** A two-partition broker stub that answers replays from a fixed list of feed items. */
function twoFeeds(items: FeedItem[], gate?: Promise<void>): Broker {
  const stub = {
    partitions: 2,
    image: () => Promise.resolve(null),
    async replay(cursor: string, limit: number) {
      await gate;
      const ids = cursor.split(",");
      if (ids.length !== 2) return null;
      const after = items.filter((i) => compareEventIds(i.cursor, ids[i.partition]) > 0)
        .slice(0, limit);
      for (const item of after) ids[item.partition] = item.cursor;
      return { cursor: ids.join(","), items: after };
    },
  };
  return stub as unknown as Broker;
}

Deno.test("over two partitions, event ids are vectors and a resume replays each partition", async () => {
  const items = [
    feedItem("ann", "a", 0, "5-0"),
    feedItem("bob", "b", 1, "6-0"),
    feedItem("ann", "c", 1, "7-0"),
    feedItem("ann", "d", 0, "8-0"),
  ];
  let positions = ["4-0", "4-0"];
  const gate = Promise.withResolvers<void>();
  const feeds = new OwnerFeeds({
    broker: twoFeeds(items, gate.promise),
    log,
    positions: () => positions,
  });
  const live = recorder();
  feeds.subscribe("ann", live);
  for (const item of items.slice(0, 3)) feeds.push(item, () => Promise.resolve(null));
  positions = ["5-0", "7-0"];
  assert.deepEqual(live.events.map((e) => e.cursor), ["5-0,4-0", "5-0,7-0"]);
  // Resume from after `a`: `c` and `d` come from the replay, `d` also live (once only).
  const resumed = recorder();
  feeds.subscribe("ann", resumed, live.events[0].cursor);
  feeds.push(items[3], () => Promise.resolve(null));
  positions = ["8-0", "7-0"];
  assert.deepEqual(resumed.lines, [], "held until the replay ran");
  gate.resolve();
  await until(() => resumed.lines.length === 2, "the replay");
  assert.deepEqual(resumed.lines, ["c queued", "d queued"]);
  assert.deepEqual(resumed.events.map((e) => e.cursor), ["5-0,7-0", "8-0,7-0"]);
  assert.deepEqual(live.lines, ["a queued", "c queued", "d queued"]);
  feeds.closeAll();
});

Deno.test("a resuming stream that holds too many live events is cut off", async () => {
  const gate = Promise.withResolvers<void>();
  const feeds = new OwnerFeeds({
    broker: twoFeeds([], gate.promise),
    log,
    positions: () => ["0-0", "0-0"],
    maxHeld: 2,
  });
  const stream = recorder();
  feeds.subscribe("ann", stream, "0-0,0-0");
  for (let n = 1; n <= 3; n++) {
    feeds.push(feedItem("ann", `j${n}`, 0, `${n}-0`), () => Promise.resolve(null));
  }
  assert.deepEqual(stream.ends, ["closed"]);
  assert.equal(feeds.size, 0);
  gate.resolve();
  await Promise.resolve();
});
