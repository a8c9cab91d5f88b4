/**
 * The partition migration on a real 3-master Redis Cluster: from 2 partitions to 3 with jobs queued,
 * parked, delayed, running and with a pending webhook delivery; every script keeps to one slot, and
 * afterwards every job is found and finishes exactly once.
 */
import assert from "node:assert/strict";
import { layoutKey, PartitionsChangedError } from "../../../lib/queue/layout_record.ts";
import { migratePartitions } from "../../../lib/queue/migrate_partitions.ts";
import { KeyLayout } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createClusterClient } from "../../../lib/redis/cluster.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { startRedisCluster } from "../../support/redis_cluster.ts";
import { SUCCESS } from "./broker_contract_helpers.ts";

const JOBS = 12;

Deno.test({
  name: "on a Redis Cluster, 2 partitions migrate to 3 and every job then finishes exactly once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await startRedisCluster({ masters: 3 });
    const prefix = `mc${crypto.randomUUID().slice(0, 6)}:`;
    const brokerOf = async (partitions: number): Promise<Broker> => {
      const client = createClusterClient({ urls: cluster.urls });
      const broker = createRedisBroker(client, { prefix, partitions, cluster: true });
      try {
        await broker.init();
      } catch (error) {
        await broker.close();
        throw error;
      }
      return broker;
    };
    const admin = createClusterClient({ urls: cluster.urls });
    try {
      const ids = Array.from({ length: JOBS }, (_, i) => `cj-${i}`);
      const old = await brokerOf(2);
      const webhook = { webhook: "https://hooks.example/in", webhookEvents: ["queued" as const] };
      for (const id of ids) await old.submit({ id, owner: "ann", prompt: id, ...webhook });
      const [running, later, done] = await old.claim("dead-worker", 3, {
        blockMs: 0,
        partition: 0,
      });
      assert.ok(await old.start(done));
      assert.ok(await old.finish(done, SUCCESS));
      assert.ok(await old.start(running));
      assert.ok(await old.start(later));
      assert.equal(await old.retryLater(later, 1, "busy"), true);
      await old.close();

      await assert.rejects(brokerOf(3), PartitionsChangedError);
      // A first run dies with the first page of job hashes copied but not yet deleted.
      const dies = (what: string) => {
        if (what === "hashes copied") throw new Error("died");
      };
      const options = { prefix, to: 3, cluster: true, leaseMs: 1000 };
      await assert.rejects(migratePartitions(admin, { ...options, onStep: dies }), /died/);
      const report = await migratePartitions(admin, options);
      assert.equal(report.migrated, true);
      assert.equal(report.delayed, 1);
      assert.equal(report.webhooks > 0, true);
      assert.equal(await admin.send(["GET", layoutKey(prefix)]), "3");

      const now = await brokerOf(3);
      try {
        for (const id of ids) assert.ok(await now.get(id), `job ${id} is found`);
        // The job that had ended keeps its image, byte for byte.
        const image = (await now.get(done.jobId, { image: true }))?.image;
        assert.equal(image, SUCCESS.image.toBase64());
        const key = new KeyLayout(prefix, 3, { tagged: true }).job(done.jobId);
        assert.ok(Number(await admin.send(["TTL", key])) > 0, "and its expiry");
        const finished = new Map<string, number>([[done.jobId, 1]]);
        const tasks = await now.webhooks.take(Date.now() + 1000, 100, 60_000);
        assert.deepEqual(tasks.map((task) => task.jobId).sort(), [...ids].sort());
        const deadline = Date.now() + 20_000;
        while (finished.size < ids.length && Date.now() < deadline) {
          await now.promoteDue(Date.now() + 10_000);
          for (const delivery of await now.claim("w", 10, { blockMs: 50 })) {
            if (!(await now.start(delivery))) {
              await now.ack(delivery);
              continue;
            }
            if (await now.finish(delivery, SUCCESS)) {
              finished.set(delivery.jobId, (finished.get(delivery.jobId) ?? 0) + 1);
            }
          }
        }
        assert.deepEqual([...finished.keys()].sort(), [...ids].sort());
        assert.ok([...finished.values()].every((n) => n === 1));
        for (const id of ids) {
          const ends = (await now.events(id)).filter((e) => e.notification.type === "succeeded");
          assert.equal(ends.length, 1, `job ${id} ends once`);
        }
      } finally {
        await now.close();
      }
    } finally {
      await admin.close();
      await cluster.stop();
    }
  },
});
