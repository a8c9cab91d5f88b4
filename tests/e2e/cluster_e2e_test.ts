/**
 * End to end on a 3-master Redis Cluster with three partitions: one api process and two worker
 * processes, a worker killed mid-run; every job ends exactly once and every master holds part of the work.
 */
import assert from "node:assert/strict";
import { KeyLayout } from "../../lib/queue/partitions.ts";
import { createClusterClient } from "../../lib/redis/cluster.ts";
import type { RedisReply } from "../../lib/redis/types.ts";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startRedisCluster } from "../support/redis_cluster.ts";
import { redisCommand } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { submit, waitFor } from "./faults_helpers.ts";

const JOBS = 60;
const SEEDS = 3;

Deno.test({
  name:
    "on a Redis Cluster every job ends exactly once across a killed worker, and every master works",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await startRedisCluster({ masters: 3 });
    const xai = await startFakeXai({ latencyMs: 150 });
    const prefix = `c${crypto.randomUUID().slice(0, 6)}:`;
    const layout = new KeyLayout(prefix, 3);
    const env = {
      REDIS_CLUSTER_URLS: cluster.urls.join(","),
      JOB_PARTITIONS: "3",
      REDIS_PREFIX: prefix,
      JWT_SECRET: TEST_SECRET,
      XAI_API_KEY: "xai-test-key",
      GROK_API: xai.url,
      IMAGE_HOSTS: xai.host,
      RATE_LIMIT_PER_MINUTE: "0",
      JOB_LEASE_MS: "1500",
      WORKER_CONCURRENCY: "4",
      JOB_BACKOFF_BASE_MS: "20",
      JOB_BACKOFF_MAX_MS: "100",
    };
    const admin = createClusterClient({ urls: cluster.urls });
    const api = await startService({ ...env, ROLE: "api" });
    const victim = await startService({ ...env, ROLE: "worker" });
    const survivor = await startService({ ...env, ROLE: "worker" });
    try {
      const token = await signToken("erin");
      const call = (path: string, init: RequestInit) => fetch(`${api.url}${path}`, init);
      const ids = Array.from({ length: JOBS }, (_, i) => `cl-${i}`);
      for (const id of ids) await submit(call, token, id);
      // Entries other services add go to the untagged intake; a worker's mover spreads them.
      for (let i = 0; i < SEEDS; i++) {
        const fields = ["Id", `seed-${i}`, "Token", token, "Prompt", `seed prompt ${i}`];
        await admin.send(["XADD", layout.intake, "*", ...fields]);
        ids.push(`seed-${i}`);
      }
      const statuses = async () =>
        await Promise.all(ids.map((id) => admin.send(["HGET", layout.job(id), "status"])));
      await waitFor("a third of the jobs done", async () => {
        const done = (await statuses()).filter((s) => s === "succeeded").length;
        return done >= JOBS / 3 ? true : undefined;
      }, 60_000);
      await victim.stop("SIGKILL");
      await waitFor("every job ended", async () => {
        const all = await statuses();
        return all.every((s) => s === "succeeded" || s === "failed") ? true : undefined;
      }, 60_000);
      for (const id of ids) {
        const flat = await admin.send(["HGETALL", layout.job(id)]) as string[];
        const fields = new Map<string, string>();
        for (let i = 0; i < flat.length; i += 2) fields.set(flat[i], flat[i + 1]);
        const types = [];
        for (let seq = 1; seq <= Number(fields.get("seq")); seq++) {
          types.push(JSON.parse(fields.get(`e${seq}`)!).type);
        }
        assert.equal(fields.get("status"), "succeeded", `${id}: ${types}`);
        assert.equal(types.filter((t) => t === "succeeded" || t === "failed").length, 1, id);
        assert.equal(types[0], "queued", id);
      }
      assert.equal(await admin.send(["XLEN", layout.intake]), 0, "the intake was spread");
      // Every master holds job hashes and a partition stream that took entries.
      for (const node of cluster.nodes) {
        const keys = await redisCommand(node.port, ["KEYS", `${prefix}*job:*`]) as string[];
        assert.ok(keys.length > 0, `master ${node.port} holds no job`);
        const streams = [0, 1, 2].map((p) => layout.jobs(p));
        const here = (await Promise.all(
          streams.map(async (s) => (await cluster.nodeOfKey(s)).port === node.port ? s : null),
        )).filter((s) => s !== null) as string[];
        assert.equal(here.length, 1, `master ${node.port} serves one partition`);
        const info = await redisCommand(node.port, ["XINFO", "STREAM", here[0]]) as RedisReply[];
        const added = Number(info[info.indexOf("entries-added") + 1]);
        assert.ok(added > 0, `master ${node.port}: partition stream took no entry`);
      }
    } finally {
      await victim.stop("SIGKILL");
      await survivor.stop();
      await api.stop();
      await admin.close();
      await xai.close();
      await cluster.stop();
    }
  },
});
