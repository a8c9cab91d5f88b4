/** The cluster transport on a real 3-master Redis Cluster: routing, blocking reads, MOVED, ASK, outages. */
import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../../lib/errors.ts";
import { createClusterClient } from "../../../lib/redis/cluster.ts";
import { keySlot } from "../../../lib/redis/slot.ts";
import { defineScript, type RedisClient } from "../../../lib/redis/types.ts";
import { type ClusterNode, startRedisCluster } from "../../support/redis_cluster.ts";
import { redisCommand } from "../../support/redis_server.ts";
import { redisClientContract, threeMasters } from "./client_contract.ts";

redisClientContract("Cluster", ({ urls }) => createClusterClient({ urls }), threeMasters);

function keyOn(slots: number[], prefix: string): string {
  const owned = new Set(slots);
  for (let i = 0;; i++) if (owned.has(keySlot(`${prefix}${i}`))) return `${prefix}${i}`;
}

async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** MOVED and ASK replies the nodes have sent so far (INFO errorstats). */
async function redirections(nodes: ClusterNode[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const info = String(await redisCommand(node.port, ["INFO", "errorstats"]));
    for (const match of info.matchAll(/errorstat_(?:MOVED|ASK):count=(\d+)/g)) {
      total += Number(match[1]);
    }
  }
  return total;
}

function other(nodes: ClusterNode[], than: ClusterNode): ClusterNode {
  return nodes.find((node) => node.port !== than.port)!;
}

Deno.test("Cluster client routes by key, blocks on its own connection and follows MOVED and ASK", async (t) => {
  const cluster = await startRedisCluster({ masters: 3 });
  const client: RedisClient = createClusterClient({ urls: cluster.urls.slice(0, 1) });
  try {
    await t.step("keys on every master are written and read through one seed", async () => {
      for (const node of cluster.nodes) {
        const key = keyOn(await cluster.slotsOf(node), "spread:");
        assert.equal(await client.send(["SET", key, `on ${node.port}`]), "OK");
        assert.equal(await client.send(["GET", key]), `on ${node.port}`);
        assert.equal(await redisCommand(node.port, ["GET", key]), `on ${node.port}`);
      }
    });

    await t.step("a burst from a new client reaches each key's master at once", async () => {
      const fresh = createClusterClient({ urls: cluster.urls });
      try {
        const before = await redirections(cluster.nodes);
        const keys = Array.from({ length: 30 }, (_, i) => `burst:${i}`);
        await Promise.all(keys.map((key) => fresh.send(["SET", key, "1"])));
        assert.equal(await redirections(cluster.nodes), before);
      } finally {
        await fresh.close();
      }
    });

    await t.step("commands reach the key's master without a redirection", async () => {
      const stream = "{routed}:s";
      const before = await redirections(cluster.nodes);
      await client.send(["XGROUP", "CREATE", stream, "g", "$", "MKSTREAM"]);
      assert.equal((await client.send(["XINFO", "GROUPS", stream]) as unknown[]).length, 1);
      await client.send(["XADD", stream, "*", "n", "1"]);
      const script = await defineScript("return redis.call('XLEN', KEYS[1])");
      assert.equal(await client.eval(script, [stream], []), 1);
      const batch = await client.pipeline([["XLEN", stream], ["HSET", "{routed}:h", "f", "v"]]);
      assert.deepEqual(batch, [1, 1]);
      assert.equal(await redirections(cluster.nodes), before);
    });

    await t.step(
      "a blocking read waits on a dedicated connection until an entry arrives",
      async () => {
        const stream = "{blocking}:s";
        await client.send(["XGROUP", "CREATE", stream, "g", "$", "MKSTREAM"]);
        const blocking = client.blocking()!;
        const { port } = await cluster.nodeOfKey(stream);
        try {
          const read = blocking.send([
            ...["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10000", "STREAMS", stream, ">"],
          ]);
          await waitUntil(async () =>
            /cmd=xreadgroup/.test(String(await redisCommand(port, ["CLIENT", "LIST"])))
          );
          const id = await client.send(["XADD", stream, "*", "n", "1"]);
          assert.deepEqual(await read, [[stream, [[id, ["n", "1"]]]]]);
        } finally {
          await blocking.close();
        }
      },
    );

    await t.step(
      "after a slot migration a key and a stream with its group still work",
      async () => {
        const key = "{moved}:k";
        const stream = "{moved}:s";
        const slot = keySlot(key);
        await client.send(["SET", key, "before"]);
        await client.send(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"]);
        const first = String(await client.send(["XADD", stream, "*", "n", "1"]));
        const second = String(await client.send(["XADD", stream, "*", "n", "2"]));
        await client.send(["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", stream, ">"]);
        const from = await cluster.nodeOfSlot(slot);
        const to = other(cluster.nodes, from);
        await cluster.migrateSlot(slot, to);
        await assert.rejects(redisCommand(from.port, ["GET", key]), /MOVED \d+/);

        assert.equal(await client.send(["GET", key]), "before");
        assert.equal(await client.send(["SET", key, "after"]), "OK");
        assert.equal(await redisCommand(to.port, ["GET", key]), "after");
        const pending = await client.send(["XPENDING", stream, "g"]) as unknown[];
        assert.deepEqual(pending.slice(0, 3), [1, first, first]);
        assert.deepEqual(
          await client.send(["XREADGROUP", "GROUP", "g", "c", "STREAMS", stream, ">"]),
          [[stream, [[second, ["n", "2"]]]]],
        );
        assert.equal(await client.send(["XACK", stream, "g", first, second]), 2);
        const get = await defineScript("return redis.call('GET', KEYS[1])");
        assert.equal(await client.eval(get, [key], []), "after");
        assert.deepEqual(await client.pipeline([["INCR", "{moved}:n"], ["GET", key]]), [
          1,
          "after",
        ]);
      },
    );

    await t.step(
      "during a migration the moved keys are reached by ASK, the rest on the source",
      async () => {
        const [moved, stays, stream, fresh] = ["a", "b", "s", "c"].map((s) => `{ask}:${s}`);
        const slot = keySlot(moved);
        await client.send(["SET", moved, "va"]);
        await client.send(["SET", stays, "vb"]);
        await client.send(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"]);
        const id = await client.send(["XADD", stream, "*", "n", "1"]);
        const from = await cluster.nodeOfSlot(slot);
        const to = other(cluster.nodes, from);
        const migration = await cluster.beginMigration(slot, to);
        await migration.moveKeys([moved, stream]);
        await assert.rejects(redisCommand(from.port, ["GET", moved]), /ASK \d+/);

        assert.equal(await client.send(["GET", moved]), "va");
        assert.equal(await client.send(["GET", stays]), "vb");
        assert.deepEqual(await client.pipeline([["GET", moved], ["GET", stays]]), ["va", "vb"]);
        assert.deepEqual(
          await client.send(["XREADGROUP", "GROUP", "g", "c", "STREAMS", stream, ">"]),
          [[stream, [[id, ["n", "1"]]]]],
        );
        assert.equal(await client.send(["SET", fresh, "vc"]), "OK");
        const onTarget = await redisCommand(to.port, ["CLUSTER", "GETKEYSINSLOT", `${slot}`, "9"]);
        assert.deepEqual((onTarget as string[]).sort(), [moved, fresh, stream].sort());

        await migration.finish();
        assert.deepEqual(await client.pipeline([["GET", moved], ["GET", stays], ["GET", fresh]]), [
          "va",
          "vb",
          "vc",
        ]);
      },
    );
    await t.step(
      "once every master is gone, commands reject with BrokerUnavailableError",
      async () => {
        const short = createClusterClient({ urls: cluster.urls, commandTimeoutMs: 300 });
        try {
          assert.equal(await short.send(["SET", "gone:k", "1"]), "OK");
          await cluster.stop();
          await assert.rejects(short.send(["GET", "gone:k"]), BrokerUnavailableError);
          await assert.rejects(short.pipeline([["GET", "gone:k"]]), BrokerUnavailableError);
          await assert.rejects(short.send(["GET", "gone:other"]), BrokerUnavailableError);
        } finally {
          await short.close();
        }
      },
    );
  } finally {
    await client.close();
    await cluster.stop();
  }
});

Deno.test("Cluster client refuses a pipeline whose keys span slots, before sending it", async () => {
  const client = createClusterClient({ urls: ["redis://127.0.0.1:1"], commandTimeoutMs: 200 });
  try {
    await assert.rejects(
      client.pipeline([["GET", "{a}x"], ["GET", "{a}y"], ["GET", "{b}x"]]),
      (error) =>
        !(error instanceof BrokerUnavailableError) &&
        /Cannot send the pipeline: its keys hash to slots \d+, \d+/.test(String(error)),
    );
  } finally {
    await client.close();
  }
});

Deno.test("Cluster client reports an unreachable cluster as BrokerUnavailableError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const client = createClusterClient({
    urls: [`redis://127.0.0.1:${port}`],
    commandTimeoutMs: 300,
  });
  try {
    const script = await defineScript("return 1");
    await assert.rejects(client.send(["GET", "k"]), BrokerUnavailableError);
    await assert.rejects(client.pipeline([["GET", "k"]]), BrokerUnavailableError);
    await assert.rejects(client.eval(script, ["k"], []), BrokerUnavailableError);
    await assert.rejects(client.blocking()!.send(["GET", "k"]), BrokerUnavailableError);
  } finally {
    await client.close();
  }
});
