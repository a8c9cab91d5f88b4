/** The Redis broker when Redis loses its data or stalls, and what its job hashes hold, over each transport. */
import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../../lib/errors.ts";
import { redisCommand } from "../../support/redis_server.ts";
import { claimJob, newJob, SUCCESS } from "./broker_contract_helpers.ts";
import { type RedisBrokerFixture, redisBrokerFixture } from "./redis_fixture.ts";

const TRANSPORTS = ["tcp", "upstash"] as const;

async function withFixture(
  transport: "tcp" | "upstash",
  fn: (f: RedisBrokerFixture, command: (args: string[]) => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const fixture = await redisBrokerFixture(transport);
  try {
    await fixture.broker.init();
    await fn(fixture, (args) => redisCommand(fixture.server.port, args));
  } finally {
    await fixture.cleanup();
  }
}

/** Fails with a message instead of hanging when `promise` does not settle within ms. */
function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Cannot settle: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

for (const transport of TRANSPORTS) {
  const options = { sanitizeOps: false, sanitizeResources: false };

  Deno.test({
    name: `redis broker (${transport}) recovers every group call after FLUSHALL and runs a new job`,
    ...options,
    async fn(t) {
      await withFixture(transport, async ({ broker }, command) => {
        const old = newJob();
        await broker.submit(old);
        const held = await claimJob(broker, old.id);
        await broker.start(held);
        // The state after a restart without persistence plus new traffic: a stream without its group.
        const lose = async () => {
          await command(["FLUSHALL"]);
          await broker.submit(newJob());
        };
        await t.step("claim", async () => {
          await lose();
          assert.equal((await broker.claim("w1", 10, { blockMs: 10 })).length, 1);
        });
        await t.step(
          "reclaim, renew, finish, retryLater, deadLetter, ack, pruneConsumers",
          async () => {
            await lose();
            assert.deepEqual(await broker.reclaim("w2", 0, 10), []);
            await lose();
            assert.deepEqual(await broker.renew("w1", [held]), ["lost"]);
            await lose();
            assert.equal(await broker.finish(held, SUCCESS), false);
            await lose();
            assert.equal(await broker.retryLater(held, 0, "provider busy"), false);
            await lose();
            await broker.deadLetter(held, "delivered too many times");
            await lose();
            await broker.ack(held);
            await lose();
            assert.equal(await broker.pruneConsumers(0), 0);
          },
        );
        await t.step("a job submitted after the loss is claimed and succeeds", async () => {
          await command(["FLUSHALL"]);
          const job = newJob();
          await broker.submit(job);
          const delivery = await claimJob(broker, job.id);
          assert.equal((await broker.start(delivery))?.status, "running");
          assert.equal(await broker.finish(delivery, SUCCESS), true);
          assert.equal((await broker.get(job.id))?.status, "succeeded");
        });
      });
    },
  });

  Deno.test({
    name: `redis broker (${transport}) ping recreates the group that FLUSHALL removed`,
    ...options,
    async fn() {
      await withFixture(transport, async ({ broker, prefix }, command) => {
        await command(["FLUSHALL"]);
        await broker.ping();
        const groups = await command(["XINFO", "GROUPS", `${prefix}jobs`]) as string[][];
        assert.deepEqual(groups.map((g) => g[g.indexOf("name") + 1]), ["workers"]);
        await broker.ping();
      });
    },
  });

  Deno.test({
    name: `redis broker (${transport}) sets a job's expiry only when it ends and stores no reason`,
    ...options,
    async fn() {
      await withFixture(transport, async ({ broker, prefix }, command) => {
        const ttl = (id: string) => command(["TTL", `${prefix}job:${id}`]).then(Number);
        const queued = newJob();
        await broker.submit(queued);
        assert.equal(await ttl(queued.id), -1, "queued");
        const running = await claimJob(broker, queued.id);
        await broker.start(running);
        assert.equal(await ttl(queued.id), -1, "running");
        await broker.retryLater(running, 60_000, "provider said 503 from 10.0.0.7");
        assert.equal(await ttl(queued.id), -1, "waiting for a retry");
        const seed = { entryId: "0-1", jobId: crypto.randomUUID(), deliveries: 1, consumer: "" };
        await broker.adoptSeed(seed, { owner: "bob", prompt: "a seed fox" });
        assert.equal(await ttl(seed.jobId), -1, "adopted");
        await broker.promoteDue(Date.now() + 120_000);
        const again = await claimJob(broker, queued.id);
        await broker.start(again);
        await broker.deadLetter(again, "delivered too many times");
        const left = await ttl(queued.id);
        assert.ok(left > 0 && left <= 86_400, `dead-lettered: ${left}`);
        assert.equal(await broker.cancel(seed.jobId), "canceled");
        assert.ok(await ttl(seed.jobId) > 0, "canceled");
        const fields = await command(["HKEYS", `${prefix}job:${queued.id}`]) as string[];
        assert.equal(fields.includes("reason"), false);
        const hash = await command(["HGETALL", `${prefix}job:${queued.id}`]) as string[];
        assert.equal(hash.some((value) => value.includes("10.0.0.7")), false);
        const dead = await command(["XRANGE", `${prefix}jobs:dead`, "-", "+"]) as string[][][];
        assert.deepEqual(dead.map(([, f]) => f[f.indexOf("reason") + 1]), [
          "delivered too many times",
        ]);
      });
    },
  });
}

Deno.test({
  name:
    "redis broker (tcp) gives up a blocking claim on a stalled server and reconnects for the next",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withFixture("tcp", async ({ broker, server }) => {
      assert.deepEqual(await broker.claim("w1", 1, { blockMs: 10 }), []);
      Deno.kill(server.pid, "SIGSTOP");
      try {
        const stalled = broker.claim("w1", 1, { blockMs: 100 });
        await assert.rejects(within(10_000, stalled), BrokerUnavailableError);
        await assert.rejects(within(10_000, broker.ping()), BrokerUnavailableError);
      } finally {
        Deno.kill(server.pid, "SIGCONT");
      }
      const job = newJob();
      await broker.submit(job);
      const claimed = await broker.claim("w1", 1, { blockMs: 1_000 });
      assert.deepEqual(claimed.map((d) => d.jobId), [job.id]);
    });
  },
});
