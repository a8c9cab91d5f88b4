/**
 * Model-based broker test: fast-check generates sequences of submit (with or without a webhook),
 * claim, start, renew, reclaim, retry, promote, finish, cancel, dead-letter, ack and expire steps by
 * two consumers, webhook outbox steps (take, done, retry, stop), listings and queue positions, and
 * each sequence runs against the reference model in broker_model.ts and against a real broker.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createMemoryBroker } from "../../../lib/queue/memory.ts";
import { KeyLayout } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import type { RedisClient } from "../../../lib/redis/types.ts";
import { createUpstashClient } from "../../../lib/redis/upstash.ts";
import { type RedisServer, startRedis } from "../../support/redis_server.ts";
import { startUpstashProxy } from "../../support/upstash_proxy.ts";
import { JOB_IDS, opsArbitrary } from "./broker_model_ops.ts";
import { runAgainstModel, type Target, type Trace } from "./broker_model_run.ts";

const TTL_SEC = 60;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

function memoryTarget(): Target & { close(): Promise<void> } {
  let clock = Date.now();
  const broker = createMemoryBroker({ ttlSec: TTL_SEC, now: () => clock });
  return {
    broker,
    now: () => clock,
    expire: () => {
      clock += (TTL_SEC + 1) * 1000;
      return Promise.resolve();
    },
    deadLetters: () => Promise.resolve(broker.deadLetters().length),
    close: () => broker.close(),
  };
}

async function prefixKeys(admin: RedisClient, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const reply = await admin.send(["SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000"]);
    const [next, batch] = reply as [string, string[]];
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys;
}

async function ttls(admin: RedisClient, keys: string[]): Promise<number[]> {
  if (keys.length === 0) return [];
  const replies = await admin.pipeline(keys.map((key) => ["PTTL", key]));
  return replies.map((reply) => {
    if (reply instanceof Error) throw reply;
    return Number(reply);
  });
}

/**
 * A Redis broker on its own prefix; expire deletes exactly the prefix's keys that the TTL's passing
 * would (owners' job indexes outlive their jobs by a day: they stay).
 */
function redisTarget(
  admin: RedisClient,
  client: RedisClient,
  kind: "redis" | "upstash",
  partitions = 1,
) {
  const prefix = `model${crypto.randomUUID().slice(0, 8)}:`;
  const layout = new KeyLayout(prefix, partitions);
  const broker = createRedisBroker(client, { prefix, ttlSec: TTL_SEC, kind, partitions });
  const target: Target & { close(): Promise<void> } = {
    broker,
    now: () => Date.now(),
    async expire() {
      const keys = await prefixKeys(admin, prefix);
      const left = await ttls(admin, keys);
      const doomed = keys.filter((_, i) => left[i] >= 0 && left[i] <= (TTL_SEC + 1) * 1000);
      if (doomed.length > 0) await admin.send(["DEL", ...doomed]);
    },
    async deadLetters() {
      const lengths = await admin.pipeline(
        Array.from({ length: partitions }, (_, p) => ["XLEN", layout.dead(p)]),
      );
      return lengths.reduce((sum: number, n) => sum + Number(n), 0);
    },
    async check(statuses) {
      const keys = JOB_IDS.map((id) => layout.job(id));
      const left = await ttls(admin, keys);
      JOB_IDS.forEach((id, i) => {
        const status = statuses[id];
        const where = `${id} (${status ?? "gone"}) has PTTL ${left[i]}`;
        if (status === null) assert.equal(left[i], -2, `${where}: it should be gone`);
        else if (TERMINAL.has(status)) assert.ok(left[i] > 0, `${where}: it should expire`);
        else assert.equal(left[i], -1, `${where}: an unfinished job must not expire`);
      });
    },
    async close() {
      await broker.close();
      const keys = await prefixKeys(admin, prefix);
      if (keys.length > 0) await admin.send(["DEL", ...keys]);
    },
  };
  return target;
}

function property(
  maxLength: number,
  numRuns: number,
  run: (ops: Parameters<typeof runAgainstModel>[1]) => Promise<unknown>,
): Promise<void> {
  // On failure fast-check reports the seed, the path and the shrunk sequence of steps.
  const steps = fc.asyncProperty(opsArbitrary(maxLength), async (ops) => void await run(ops));
  return fc.assert(steps, { numRuns });
}

Deno.test("the memory broker answers every generated sequence as the model does", async () => {
  await property(50, 1000, async (ops) => {
    const target = memoryTarget();
    try {
      await runAgainstModel(target, ops);
    } finally {
      await target.close();
    }
  });
});

async function withRedis(fn: (server: RedisServer, admin: RedisClient) => Promise<void>) {
  const server = await startRedis();
  const admin = createTcpClient({ url: server.url });
  try {
    await fn(server, admin);
  } finally {
    await admin.close();
    await server.stop();
  }
}

Deno.test({
  name: "the Redis broker answers every generated sequence as the model and the memory broker do",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRedis(async (server, admin) => {
      await property(40, 200, async (ops) => {
        const memory = memoryTarget();
        const redis = redisTarget(admin, createTcpClient({ url: server.url }), "redis");
        let traces: Trace[];
        try {
          traces = [await runAgainstModel(memory, ops), await runAgainstModel(redis, ops)];
        } finally {
          await Promise.allSettled([memory.close(), redis.close()]);
        }
        assert.deepEqual(traces[1], traces[0], "the brokers disagree");
      });
    });
  },
});

Deno.test({
  name: "the Redis broker with three partitions answers every generated sequence as the model does",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRedis(async (server, admin) => {
      await property(40, 150, async (ops) => {
        const target = redisTarget(admin, createTcpClient({ url: server.url }), "redis", 3);
        try {
          await runAgainstModel(target, ops);
        } finally {
          await target.close();
        }
      });
    });
  },
});

Deno.test({
  name: "the Redis broker over Upstash REST answers generated sequences as the model does",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRedis(async (server, admin) => {
      const token = crypto.randomUUID();
      const proxy = await startUpstashProxy({ redisUrl: server.url, token });
      try {
        await property(30, 40, async (ops) => {
          const client = createUpstashClient({ url: proxy.url, token });
          const target = redisTarget(admin, client, "upstash");
          try {
            await runAgainstModel(target, ops);
          } finally {
            await target.close();
          }
        });
      } finally {
        await proxy.close();
      }
    });
  },
});
