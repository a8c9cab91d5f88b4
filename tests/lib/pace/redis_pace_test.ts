/**
 * The pace and the turns in Redis (TURN, THROTTLE on a real redis-server): a server-side clock shared by
 * every process, so two brokers together never send more than the pace; a 429 holds them all.
 */
import assert from "node:assert/strict";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { startRedis } from "../../support/redis_server.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

/** Two brokers ("processes") on one Redis with `pace` requests/s over `partitions` partitions. */
async function twoProcesses(pace: number | null, partitions = 1) {
  const server = await startRedis();
  const prefix = `p${crypto.randomUUID().slice(0, 8)}:`;
  const make = () =>
    createRedisBroker(createTcpClient({ url: server.url }), { prefix, pace, partitions });
  const brokers = [make(), make()];
  for (const broker of brokers) await broker.init();
  return {
    brokers,
    async close() {
      await Promise.all(brokers.map((b) => b.close()));
      await server.stop();
    },
  };
}

/** Submits `n` jobs of `owner` through alternating brokers. */
async function submitMany(brokers: Broker[], owner: string, n: number) {
  for (let i = 0; i < n; i++) {
    const job = { id: `${owner}-${String(i).padStart(3, "0")}`, owner, prompt: "p" };
    await brokers[i % brokers.length].submit(job);
  }
}

/** Claims from both brokers as fast as they answer for `ms`; the times of every delivery. */
async function claimFor(brokers: Broker[], ms: number): Promise<number[]> {
  const times: number[] = [];
  const end = Date.now() + ms;
  await Promise.all(brokers.map(async (broker, i) => {
    while (Date.now() < end) {
      const got = await broker.claim(`c${i}`, 8, { blockMs: Math.max(1, end - Date.now()) });
      for (const _ of got) times.push(Date.now());
    }
  }));
  return times;
}

for (const partitions of [1, 3]) {
  test(`two processes together take at most the pace's turns (${partitions} partition(s))`, async () => {
    const { brokers, close } = await twoProcesses(10, partitions);
    try {
      await submitMany(brokers, "heavy", 60);
      const times = await claimFor(brokers, 2_000);
      // 10/s for 2 s, each partition's share with its burst of one, and one more per partition
      // at the edges of the window.
      assert.ok(times.length <= 20 + 2 * partitions, `${times.length} claimed in 2 s`);
      assert.ok(times.length >= 14, `${times.length} claimed in 2 s: the pace is used`);
    } finally {
      await close();
    }
  });
}

test("a 429 told to one process holds every process's turns, and halves the pace", async () => {
  const { brokers, close } = await twoProcesses(20);
  try {
    await submitMany(brokers, "heavy", 40);
    // Turns taken before the 429 may still be claimed: take them all first.
    while ((await brokers[0].claim("c0", 8, { blockMs: 0 })).length > 0);
    const throttledAt = Date.now();
    await brokers[0].throttle(1_000);
    const held = await brokers[1].turn(0, 8);
    assert.equal(held.moved, 0);
    assert.ok(held.waitMs > 500 && held.waitMs <= 1_000, `waits ${held.waitMs} ms`);
    assert.equal(held.pace, 10);
    const times = await claimFor(brokers, 1_500);
    const first = Math.min(...times);
    assert.ok(times.length > 0);
    // Nothing before the hold ended, then about 10/s (+ the burst of a fifth of a second).
    assert.ok(times.length <= 8, `${times.length} in the 0.5 s after the hold`);
    assert.ok(first - throttledAt >= 950, `first claim ${first - throttledAt} ms after the 429`);
  } finally {
    await close();
  }
});

test("with no fixed pace turns are free until a 429, then paced at what was sent", async () => {
  const { brokers, close } = await twoProcesses(0);
  try {
    await submitMany(brokers, "heavy", 60);
    const free = await brokers[0].turn(0, 30);
    assert.equal(free.moved, 30);
    assert.equal(free.pace, null);
    await brokers[1].throttle(0);
    const after = await brokers[0].turn(0, 30);
    assert.ok(after.pace !== null && after.pace <= 16 && after.pace >= 14, `pace ${after.pace}`);
    assert.ok(after.moved <= 3, `${after.moved} moved at once after the cut`);
  } finally {
    await close();
  }
});

test("owners take turns across processes: a light owner's job comes within two turns", async () => {
  const { brokers, close } = await twoProcesses(null);
  try {
    await submitMany(brokers, "heavy", 50);
    await brokers[1].submit({ id: "light-1", owner: "light", prompt: "p" });
    const first = [];
    while (first.length < 3) {
      first.push(...await brokers[first.length % 2].claim("c", 1, { blockMs: 100 }));
    }
    assert.ok(first.some((d) => d.jobId === "light-1"), first.map((d) => d.jobId).join(" "));
    assert.equal(await brokers[0].queuePosition("heavy-049"), 47);
  } finally {
    await close();
  }
});
