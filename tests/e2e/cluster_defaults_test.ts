/** End to end on a Redis Cluster with JOB_PARTITIONS unset: one tagged partition, and the intake moved into it. */
import assert from "node:assert/strict";
import { KeyLayout } from "../../lib/queue/partitions.ts";
import { createClusterClient } from "../../lib/redis/cluster.ts";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startRedisCluster } from "../support/redis_cluster.ts";
import { startService } from "../support/service.ts";
import { submit, waitFor } from "./faults_helpers.ts";

Deno.test({
  name: "on a Redis Cluster with the default JOB_PARTITIONS, submitted and intake jobs succeed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await startRedisCluster({ masters: 3 });
    const xai = await startFakeXai();
    const prefix = `d${crypto.randomUUID().slice(0, 6)}:`;
    const layout = new KeyLayout(prefix, 1, { tagged: true });
    const admin = createClusterClient({ urls: cluster.urls });
    const service = await startService({
      REDIS_CLUSTER_URLS: cluster.urls.join(","),
      REDIS_PREFIX: prefix,
      JWT_SECRET: TEST_SECRET,
      XAI_API_KEY: "xai-test-key",
      GROK_API: xai.url,
      IMAGE_HOSTS: xai.host,
    });
    try {
      const token = await signToken("dora");
      const call = (path: string, init: RequestInit) => fetch(`${service.url}${path}`, init);
      const ids = ["d-0", "d-1", "d-2"];
      for (const id of ids) await submit(call, token, id);
      await admin.send(["XADD", layout.intake, "*", "Id", "d-seed", "Token", token, "Prompt", "p"]);
      ids.push("d-seed");
      const statuses = async () =>
        await Promise.all(ids.map((id) => admin.send(["HGET", layout.job(id), "status"])));
      await waitFor("every job ended", async () => {
        const all = await statuses();
        return all.every((s) => s === "succeeded" || s === "failed") ? all : undefined;
      }, 30_000);
      assert.deepEqual(await statuses(), ids.map(() => "succeeded"));
      assert.equal(await admin.send(["XLEN", layout.intake]), 0, "the intake was moved");
      assert.equal(xai.calls, ids.length);
    } finally {
      await service.stop();
      await admin.close();
      await xai.close();
      await cluster.stop();
    }
  },
});
