/**
 * The broker contract with three partitions over the Cluster transport, on a real 3-master Redis
 * Cluster (one for the whole file, a fresh prefix per test), and the tags' slots as the cluster sees them.
 */
import assert from "node:assert/strict";
import { KeyLayout, partitionTags } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createClusterClient } from "../../../lib/redis/cluster.ts";
import { keySlot } from "../../../lib/redis/slot.ts";
import { type RedisCluster, startRedisCluster } from "../../support/redis_cluster.ts";
import { redisCommand } from "../../support/redis_server.ts";
import { brokerContract, type MakeBroker } from "./broker_contract.ts";
import { redisHooks } from "./redis_fixture.ts";

let cluster: Promise<RedisCluster> | undefined;
const options = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "partition tags land on the slots CLUSTER KEYSLOT names, one partition per master with N = 3",
  ...options,
  async fn() {
    const { nodes } = await (cluster ??= startRedisCluster({ masters: 3 }));
    const [first] = nodes;
    for (const n of [3, 6]) {
      for (const tag of partitionTags(n)) {
        const key = `img:{${tag}}jobs`;
        assert.equal(await redisCommand(first.port, ["CLUSTER", "KEYSLOT", key]), keySlot(key));
      }
    }
    const c = await cluster;
    const layout = new KeyLayout("img:", 3);
    const owners = await Promise.all([0, 1, 2].map((p) => c.nodeOfKey(layout.jobs(p))));
    assert.equal(new Set(owners.map((node) => node.port)).size, 3);
  },
});

/** A broker with `partitions` partitions over the Cluster transport (tagged, as on any Cluster). */
function clusterBroker(partitions: number): MakeBroker {
  return async () => {
    const c = await (cluster ??= startRedisCluster({ masters: 3 }));
    const prefix = `t${crypto.randomUUID().slice(0, 8)}:`;
    const layout = new KeyLayout(prefix, partitions, { tagged: true });
    const admin = createClusterClient({ urls: c.urls });
    const broker = createRedisBroker(createClusterClient({ urls: c.urls }), {
      prefix,
      partitions,
      cluster: true,
      notices: true,
    });
    const command = (args: string[]) => admin.send(args);
    const keys = async (pattern: string) =>
      (await Promise.all(c.nodes.map((node) => redisCommand(node.port, ["KEYS", pattern]))))
        .flat() as string[];
    const cleanup = async () => {
      await broker.close();
      await admin.close();
    };
    return { broker, cleanup, hooks: redisHooks(command, keys, broker, layout) };
  };
}

brokerContract("cluster 3-partition", clusterBroker(3), options);
// On a Cluster even one partition is tagged (its scripts' keys must share a slot).
brokerContract("cluster 1-partition", clusterBroker(1), options);

Deno.test({
  name: "the cluster stops after the contract",
  ...options,
  async fn() {
    await (await cluster)?.stop();
  },
});
