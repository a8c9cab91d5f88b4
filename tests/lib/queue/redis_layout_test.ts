/**
 * The recorded partition count and the migration's guards: first start records it, another count is
 * refused (also by `main.ts`), one migration at a time, none while a worker runs, deliveries keep
 * their stream, and the owners' keys and webhook deliveries move between one untagged partition and two.
 */
import assert from "node:assert/strict";
import { runMigration } from "../../../lib/cli/migrate_partitions.ts";
import {
  layoutKey,
  migrationLockKey,
  PartitionsChangedError,
} from "../../../lib/queue/layout_record.ts";
import { migratePartitions } from "../../../lib/queue/migrate_partitions.ts";
import { KeyLayout, partitionOf } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { TEST_SECRET } from "../../support/app.ts";
import { redisCommand, type RedisServer, startRedis } from "../../support/redis_server.ts";
import { startService } from "../../support/service.ts";

const test = (name: string, fn: (redis: RedisServer, prefix: string) => Promise<void>) =>
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const redis = await startRedis();
      try {
        await fn(redis, `l${crypto.randomUUID().slice(0, 6)}:`);
      } finally {
        await redis.stop();
      }
    },
  });

/** A broker with `partitions` partitions over TCP, initialised (and so checked). */
async function brokerOf(redis: RedisServer, prefix: string, partitions: number) {
  const broker = createRedisBroker(createTcpClient({ url: redis.url }), {
    prefix,
    partitions,
    notices: true,
  });
  try {
    await broker.init();
  } catch (error) {
    await broker.close();
    throw error;
  }
  return broker;
}

test(
  "a fresh Redis records JOB_PARTITIONS on first start; the same count starts again",
  async (redis, prefix) => {
    assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), null);
    await (await brokerOf(redis, prefix, 2)).close();
    assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");
    await (await brokerOf(redis, prefix, 2)).close();
    for (const other of [1, 3]) {
      await assert.rejects(
        brokerOf(redis, prefix, other),
        (error: Error) =>
          error instanceof PartitionsChangedError &&
          error.message.includes(`JOB_PARTITIONS is ${other}`) &&
          error.message.includes("JOB_PARTITIONS=2"),
      );
    }
    assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");
  },
);

test(
  "the service refuses to start with another JOB_PARTITIONS, naming both counts",
  async (redis, prefix) => {
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, JWT_SECRET: TEST_SECRET };
    const first = await startService({ ...env, JOB_PARTITIONS: "2" });
    assert.equal(await first.stop(), 0);
    await assert.rejects(
      startService({ ...env, JOB_PARTITIONS: "3" }),
      (error: Error) =>
        error.message.includes("Cannot start: JOB_PARTITIONS is 3") &&
        error.message.includes("JOB_PARTITIONS=2") &&
        error.message.includes("migrate-partitions") && !error.message.includes("    at "),
    );
  },
);

test(
  "a second migration is refused while one holds the lock; two at once move the jobs once",
  async (redis, prefix) => {
    const old = await brokerOf(redis, prefix, 2);
    const ids = Array.from({ length: 12 }, (_, i) => `lock-${i}`);
    for (const id of ids) await old.submit({ id, owner: "ann", prompt: id });
    await old.close();
    const client = createTcpClient({ url: redis.url });
    try {
      await redisCommand(redis.port, ["SET", migrationLockKey(prefix), "someone", "PX", "60000"]);
      await assert.rejects(
        migratePartitions(client, { prefix, to: 3, leaseMs: 1000 }),
        /another migration holds the lock/,
      );
      assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");
      await redisCommand(redis.port, ["DEL", migrationLockKey(prefix)]);
      const runs = await Promise.allSettled([
        migratePartitions(client, { prefix, to: 3, leaseMs: 1000 }),
        migratePartitions(client, { prefix, to: 3, leaseMs: 1000 }),
      ]);
      const migrated = runs.filter((r) => r.status === "fulfilled" && r.value.migrated);
      assert.equal(migrated.length, 1);
      for (const run of runs) {
        if (run.status === "rejected") assert.match(run.reason.message, /holds the lock/);
      }
      const now = await brokerOf(redis, prefix, 3);
      try {
        for (const id of ids) assert.equal((await now.get(id))?.status, "queued");
        const layout = new KeyLayout(prefix, 3);
        let entries = 0, parked = 0;
        for (let p = 0; p < 3; p++) {
          entries += Number(await redisCommand(redis.port, ["XLEN", layout.jobs(p)]));
          parked += Number(await redisCommand(redis.port, ["ZCARD", layout.room(p)]));
        }
        assert.equal(entries + parked, ids.length, "each job queued once");
      } finally {
        await now.close();
      }
    } finally {
      await client.close();
    }
  },
);

test(
  "the migration refuses while a worker still reads, and leaves the record as it was",
  async (redis, prefix) => {
    const old = await brokerOf(redis, prefix, 2);
    const client = createTcpClient({ url: redis.url });
    try {
      await old.submit({ id: "busy-1", owner: "ann", prompt: "p" });
      // A live worker: it has read a moment ago (its lease is 10 s; the test will not wait for it).
      await old.claim("live-worker", 1, { blockMs: 0, partition: partitionOf("busy-1", 2) });
      await assert.rejects(
        migratePartitions(client, { prefix, to: 3, leaseMs: 10_000, quietTimeoutMs: 100 }),
        /worker live-worker read .* stop every process/,
      );
      assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");
      assert.equal((await old.get("busy-1"))?.status, "queued");
      // A worker that starts just after the wait (before the record says "2>3") is caught too.
      await old.submit({ id: "busy-2", owner: "ann", prompt: "p" });
      const starting = async (what: string) => {
        if (what !== "mark") return;
        await old.claim("late-worker", 1, { blockMs: 0, partition: partitionOf("busy-2", 2) });
      };
      await assert.rejects(
        migratePartitions(client, { prefix, to: 3, leaseMs: 300, onStep: starting }),
        /worker late-worker read/,
      );
      assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");
    } finally {
      await client.close();
      await old.close();
    }
  },
);

test("a delivery is acknowledged and renewed on the stream it came from", async (redis, prefix) => {
  const broker = await brokerOf(redis, prefix, 2);
  try {
    // An entry in partition 0's stream for an id of partition 1 (as a process with another count left it).
    const id = Array.from({ length: 50 }, (_, i) => `odd-${i}`).find((x) =>
      partitionOf(x, 2) === 1
    )!;
    const layout = new KeyLayout(prefix, 2);
    await redisCommand(redis.port, ["XADD", layout.jobs(0), "*", "Id", id]);
    const [delivery] = await broker.claim("w", 1, { blockMs: 0, partition: 0 });
    assert.equal(delivery.jobId, id);
    assert.equal(delivery.partition, 0);
    const [lease] = await broker.renew("w", [delivery]);
    assert.notEqual(lease, "lost");
    await broker.ack(delivery);
    assert.equal(await redisCommand(redis.port, ["XLEN", layout.jobs(0)]), 0);
  } finally {
    await broker.close();
  }
});

test(
  "one untagged partition to three, to two and back: owners' listings, webhook deliveries and Socket.IO notices follow",
  async (redis, prefix) => {
    const webhook = "https://hooks.example/in";
    const ids = Array.from({ length: 8 }, (_, i) => `own-${i}`);
    const one = await brokerOf(redis, prefix, 1);
    for (const id of ids) {
      await one.submit({ id, owner: "ann", prompt: id, webhook, webhookEvents: ["queued"] });
      assert.equal(await one.cancel(id), "canceled"); // a job end: one Socket.IO notice each
    }
    await one.close();
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, JOB_LEASE_MS: "1000" };
    for (const [to, from] of [[3, 1], [2, 3], [1, 2]]) {
      const out: string[] = [];
      const code = await runMigration({
        env: { ...env, JOB_PARTITIONS: String(to) },
        args: [],
        stdout: (text) => out.push(text),
        stderr: (text) => out.push(text),
      });
      assert.equal(code, 0, out.join("\n"));
      assert.match(out.at(-1)!, new RegExp(`Migrated JOB_PARTITIONS from ${from} to ${to}`));
      const broker = await brokerOf(redis, prefix, to);
      try {
        const page = await broker.list("ann", { limit: 100 });
        assert.deepEqual(page.jobs.map((job) => job.id).sort(), [...ids].sort());
        const tasks = await broker.webhooks.take(Date.now() + 1000, 100, 60_000);
        assert.deepEqual(tasks.map((task) => task.jobId).sort(), [...ids].sort());
        for (const task of tasks) await broker.webhooks.retry(task, Date.now() - 1);
        const notices = await broker.notices!.take(Date.now() + 1000, 100, 60_000);
        assert.deepEqual(notices.map((task) => task.jobId).sort(), [...ids].sort());
        for (const task of notices) await broker.notices!.retry(task, Date.now() - 1);
      } finally {
        await broker.close();
      }
    }
  },
);

test("the migration command needs a Redis", async () => {
  const out: string[] = [];
  const code = await runMigration({
    env: { JOB_PARTITIONS: "3" },
    args: [],
    stdout: (text) => out.push(text),
    stderr: (text) => out.push(text),
  });
  assert.equal(code, 1);
  assert.match(out.join("\n"), /no Redis is configured/);
});
