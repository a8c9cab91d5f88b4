/**
 * One master of a 3-master Redis Cluster down, with one partition on each master: the broker's
 * maintenance steps (renewals, promotions, takeovers, pruning) go on for the partitions that answer.
 */
import assert from "node:assert/strict";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { KeyLayout } from "../../../lib/queue/partitions.ts";
import type { Delivery } from "../../../lib/queue/types.ts";
import { createClusterClient } from "../../../lib/redis/cluster.ts";
import { startRedisCluster } from "../../support/redis_cluster.ts";
import { redisCommand } from "../../support/redis_server.ts";
import { SUCCESS } from "./broker_contract_helpers.ts";

/** Job ids of partition `p` of 3. */
function idsOf(p: number, count: number, stem: string): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) {
    if (partitionOf(`${stem}${i}`, 3) === p) ids.push(`${stem}${i}`);
  }
  return ids;
}

Deno.test({
  name:
    "a partition whose master is down holds back only its own renewals, promotions and takeovers",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await startRedisCluster({ masters: 3 });
    const prefix = "out:";
    const layout = new KeyLayout(prefix, 3, { tagged: true });
    const reported: string[] = [];
    const broker = createRedisBroker(
      createClusterClient({ urls: cluster.urls, commandTimeoutMs: 1_000 }),
      { prefix, partitions: 3, cluster: true, onError: (what) => void reported.push(what) },
    );
    try {
      await broker.init();
      // Without full coverage the masters that are up keep serving their own slots.
      for (const node of cluster.nodes) {
        await redisCommand(node.port, ["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
      }
      const running: Delivery[] = [];
      for (const p of [0, 1, 2]) {
        const [run, later] = idsOf(p, 2, `p${p}-`);
        for (const id of [run, later]) await broker.submit({ id, owner: "ann", prompt: "a fox" });
        const claimed = await broker.claim("w1", 2, { blockMs: 0, partition: p });
        assert.deepEqual(claimed.map((d) => d.jobId).sort(), [run, later].sort());
        for (const d of claimed) await broker.start(d);
        running.push(claimed.find((d) => d.jobId === run)!);
        const retry = claimed.find((d) => d.jobId === later)!;
        assert.equal(await broker.retryLater(retry, 0, "provider busy"), true);
      }
      const down = await cluster.nodeOfKey(layout.jobs(2));
      Deno.kill(down.pid, "SIGKILL");

      const statuses = await broker.renew("w1", running);
      assert.deepEqual(statuses, ["running", "running", "unknown"]);
      assert.equal(await broker.promoteDue(Date.now() + 60_000), 2, "partitions 0 and 1 promote");
      const taken = await broker.reclaim("w2", 0, 10);
      assert.deepEqual(
        taken.map((d) => partitionOf(d.jobId, 3)).sort(),
        [0, 1],
        "partitions 0 and 1 hand over their stalled jobs",
      );
      assert.equal(await broker.pruneConsumers(60_000), 0);
      for (const d of taken) {
        await broker.start(d);
        assert.equal(await broker.finish(d, SUCCESS), true);
      }
      assert.ok(reported.some((what) => what.includes("partition 2")), `reported: ${reported}`);
    } finally {
      await broker.close();
      await cluster.stop();
    }
  },
});
