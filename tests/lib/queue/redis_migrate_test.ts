/**
 * Changing JOB_PARTITIONS from 2 to 3 over queued, parked, delayed and running jobs: a process started
 * with 3 is refused, the migration moves every job, and then every job is found and runs exactly once
 * (provider calls counted at the fake xAI, terminal events in each job's log). Over TCP and Upstash
 * REST, and over TCP once more with the migration dying halfway and run again.
 */
import assert from "node:assert/strict";
import { layoutKey, PartitionsChangedError } from "../../../lib/queue/layout_record.ts";
import { migratePartitions } from "../../../lib/queue/migrate_partitions.ts";
import { KeyLayout } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import type { RedisClient } from "../../../lib/redis/types.ts";
import { createUpstashClient } from "../../../lib/redis/upstash.ts";
import { startTestService, submitJob, waitForStatus } from "../../support/app.ts";
import { type FakeXai, startFakeXai } from "../../support/fake_xai.ts";
import { redisCommand, type RedisServer, startRedis } from "../../support/redis_server.ts";
import { transportTest, type Via } from "../../support/transports.ts";
import { SUCCESS } from "./broker_contract_helpers.ts";

const JOBS = 20;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The client a service would use over `redisEnv` (TCP, or the Upstash proxy). */
function clientOf(redisEnv: Record<string, string>): RedisClient {
  if (redisEnv.REDIS_URL) return createTcpClient({ url: redisEnv.REDIS_URL });
  const url = redisEnv.UPSTASH_REDIS_REST_URL;
  return createUpstashClient({ url, token: redisEnv.UPSTASH_REDIS_REST_TOKEN });
}

/** A service's environment with `partitions` partitions on the fake xAI. */
function envOf(
  redisEnv: Record<string, string>,
  prefix: string,
  xai: FakeXai,
  partitions: number,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...redisEnv,
    REDIS_PREFIX: prefix,
    JOB_PARTITIONS: String(partitions),
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    GROK_MAX_RPS: "0",
    JOB_LEASE_MS: "1000",
    MAX_ACTIVE_JOBS_PER_OWNER: "0",
    ...extra,
  };
}

/**
 * Submits JOBS jobs through an api-only process with 2 partitions (the first of each partition on its
 * stream, the others parked in the waiting room), then, as a worker that dies, runs one (running,
 * never finished), sends one back for later (delayed) and finishes one (an image, an expiry).
 */
async function jobsOnTwoPartitions(redis: RedisServer, env: Record<string, string>) {
  const api = await startTestService({ env: { ...env, ROLE: "api" } });
  const ids: string[] = [];
  try {
    for (let i = 0; i < JOBS; i++) {
      const token = await api.token(i % 2 === 0 ? "ann" : "bob");
      const { response, body } = await submitJob(api, token, { prompt: `job ${i}` });
      assert.equal(response.status, 202);
      ids.push(body.id);
    }
  } finally {
    await api.close();
  }
  const prefix = env.REDIS_PREFIX;
  const dying = createRedisBroker(createTcpClient({ url: redis.url }), { prefix, partitions: 2 });
  try {
    await dying.init();
    // Both from partition 0, whose tag changes from 2 to 3 partitions (partition 1's does not).
    const [running, later, done] = await dying.claim("dead-worker", 3, {
      blockMs: 0,
      partition: 0,
    });
    assert.equal((await dying.start(running))?.status, "running");
    assert.ok(await dying.start(later));
    assert.equal(await dying.retryLater(later, 1, "provider busy"), true);
    assert.ok(await dying.start(done));
    assert.equal(await dying.finish(done, SUCCESS), true);
    return { ids, running: running.jobId, delayed: later.jobId, finished: done.jobId };
  } finally {
    await dying.close();
  }
}

/** Counts of the old layout's queued work, read straight from Redis. */
async function workOf(redis: RedisServer, layout: KeyLayout) {
  const count = async (command: string, key: string) =>
    Number(await redisCommand(redis.port, [command, key]));
  let stream = 0, parked = 0, delayed = 0;
  for (let p = 0; p < layout.partitions; p++) {
    stream += await count("XLEN", layout.jobs(p));
    parked += await count("ZCARD", layout.room(p));
    delayed += await count("ZCARD", layout.delayed(p));
  }
  return { stream, parked, delayed };
}

async function scenario(via: Via, crashAt?: string) {
  const redis = await startRedis();
  const xai = await startFakeXai();
  const prefix = `m${crypto.randomUUID().slice(0, 6)}:`;
  const redisEnv = await via.redisEnv(redis);
  const client = clientOf(redisEnv);
  try {
    const { ids, running, delayed, finished } = await jobsOnTwoPartitions(
      redis,
      envOf(redisEnv, prefix, xai, 2),
    );
    const before = await workOf(redis, new KeyLayout(prefix, 2));
    assert.ok(before.stream >= 2 && before.parked >= 10 && before.delayed === 1, `${before}`);
    assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2");

    await assert.rejects(
      startTestService({ env: envOf(redisEnv, prefix, xai, 3) }),
      (error: Error) =>
        error instanceof PartitionsChangedError &&
        error.message.includes("JOB_PARTITIONS is 3") &&
        error.message.includes("JOB_PARTITIONS=2"),
    );

    if (crashAt) {
      const onStep = (what: string) => {
        if (what === crashAt) throw new Error(`died at ${what}`);
      };
      await assert.rejects(
        migratePartitions(client, { prefix, to: 3, leaseMs: 1000, onStep }),
        /died at/,
      );
      assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "2>3");
      for (const n of [2, 3]) {
        await assert.rejects(
          startTestService({ env: envOf(redisEnv, prefix, xai, n) }),
          /migration of JOB_PARTITIONS from 2 to 3 has not finished/,
        );
      }
    }
    const report = await migratePartitions(client, { prefix, to: 3, leaseMs: 1000 });
    assert.equal(report.migrated, true);
    assert.equal(await redisCommand(redis.port, ["GET", layoutKey(prefix)]), "3");
    // Nothing lost and nothing doubled: the same work, laid out for 3.
    const layout = new KeyLayout(prefix, 3);
    const after = await workOf(redis, layout);
    assert.deepEqual(after, before);
    // Each where its id's partition has it: the delayed job's retry, the running job's entry.
    const due = ["ZSCORE", layout.delayed(layout.partitionOf(delayed)), delayed];
    assert.notEqual(await redisCommand(redis.port, due), null);
    const entry = String(await redisCommand(redis.port, ["HGET", layout.job(running), "entry"]));
    const stream = layout.jobs(layout.partitionOf(running));
    const found = await redisCommand(redis.port, ["XRANGE", stream, entry, entry]) as unknown[];
    assert.equal(found.length, 1, "the running job's entry is in its new partition's stream");
    const ttl = await redisCommand(redis.port, ["TTL", layout.job(finished)]);
    assert.ok(Number(ttl) > 0, "the finished job keeps its expiry");

    const service = await startTestService({ env: envOf(redisEnv, prefix, xai, 3) });
    try {
      const broker = service.runtime.deps.broker;
      for (const id of ids) assert.ok(await broker.get(id), `job ${id} is found after migrating`);
      const token = await service.token("ann");
      const bob = await service.token("bob");
      for (const [i, id] of ids.entries()) {
        const done = await waitForStatus(service, i % 2 === 0 ? token : bob, id, [...TERMINAL]);
        assert.equal(done.status, "succeeded", `job ${id}`);
      }
      // Every job but the one finished before the migration (its image is the same bytes).
      assert.equal((await broker.get(finished, { image: true }))?.image, SUCCESS.image.toBase64());
      assert.equal(xai.calls, JOBS - 1, "one provider call per job");
      for (const [i, id] of ids.entries()) {
        assert.equal(xai.callsByPrompt.get(`job ${i}`), id === finished ? undefined : 1);
      }
      for (const id of ids) {
        const events = await broker.events(id);
        const ends = events.filter((e) => TERMINAL.has(e.notification.type));
        assert.equal(ends.length, 1, `job ${id} ends once`);
        const starts = events.filter((e) => e.notification.type === "started");
        // The delayed job had started once before its retry; the running one is taken over.
        assert.equal(starts.length, id === delayed ? 2 : 1, `job ${id} starts once more`);
      }
      assert.equal((await broker.get(running))?.attempts, 2, "the running job was taken over");
    } finally {
      await service.close();
    }
  } finally {
    await client.close();
    await xai.close();
    await redis.stop();
  }
}

transportTest(
  "a partition count change is refused until migrated, then every job runs exactly once",
  async (_t, via) => await scenario(via),
);

for (const crashAt of ["hashes", "entries copied", "sorted sets"]) {
  Deno.test({
    name: `a migration that dies at "${crashAt}" is finished by running it again (tcp)`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () =>
      await scenario({
        name: "tcp",
        redisEnv: (redis) => Promise.resolve({ REDIS_URL: redis.url }),
      }, crashAt),
  });
}
