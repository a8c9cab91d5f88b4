/** A transport-agnostic test suite for RedisClient implementations, run against a real redis-server or cluster. */
import assert from "node:assert/strict";
import { defineScript, type RedisClient } from "../../../lib/redis/types.ts";
import { startRedisCluster } from "../../support/redis_cluster.ts";
import { redisCommand, startRedis } from "../../support/redis_server.ts";

/** What one contract run talks to: a single redis-server or a cluster. */
export interface ContractTarget {
  /** The server's URL, or the cluster's seed URLs. */
  readonly urls: string[];
  /** Whether the server that serves `key` has the script `sha` cached. */
  scriptCached(sha: string, key: string): Promise<boolean>;
  /** Empties the script cache of every server. */
  flushScripts(): Promise<void>;
  stop(): Promise<void>;
}

/** Builds a client for the target (a transport may put a proxy in between). */
export type RedisClientFactory = (target: ContractTarget) => RedisClient | Promise<RedisClient>;

/** One redis-server. */
export async function singleServer(): Promise<ContractTarget> {
  const server = await startRedis();
  return {
    urls: [server.url],
    async scriptCached(sha) {
      return (await redisCommand(server.port, ["SCRIPT", "EXISTS", sha]) as number[])[0] === 1;
    },
    async flushScripts() {
      await redisCommand(server.port, ["SCRIPT", "FLUSH"]);
    },
    stop: () => server.stop(),
  };
}

/** A 3-master Redis Cluster. */
export async function threeMasters(): Promise<ContractTarget> {
  const cluster = await startRedisCluster({ masters: 3 });
  return {
    urls: cluster.urls,
    async scriptCached(sha, key) {
      const { port } = await cluster.nodeOfKey(key);
      return (await redisCommand(port, ["SCRIPT", "EXISTS", sha]) as number[])[0] === 1;
    },
    async flushScripts() {
      await Promise.all(cluster.nodes.map((n) => redisCommand(n.port, ["SCRIPT", "FLUSH"])));
    },
    stop: () => cluster.stop(),
  };
}

/** Registers one Deno test that checks the RedisClient contract for one transport. */
export function redisClientContract(
  name: string,
  make: RedisClientFactory,
  start: () => Promise<ContractTarget> = singleServer,
): void {
  Deno.test(`${name} client honours the RedisClient contract`, async (t) => {
    const target = await start();
    let client: RedisClient | undefined;
    try {
      client = await make(target);
      await contractSteps(t, client, target);
      await t.step(
        "close is idempotent, closes its blocking clients, and later commands reject",
        async () => {
          const child = client!.blocking();
          if (child) assert.equal(await child.send(["PING"]), "PONG");
          await client!.close();
          await client!.close();
          await assert.rejects(client!.send(["PING"]));
          if (child) await assert.rejects(child.send(["PING"]), "the blocking client closed too");
        },
      );
    } finally {
      await client?.close();
      await target.stop();
    }
  });
}

async function contractSteps(t: Deno.TestContext, client: RedisClient, target: ContractTarget) {
  // One hash tag: multi-key commands and pipelines stay on one slot, as they must on a cluster.
  const key = (suffix: string) => `{contract}:${suffix}`;

  await t.step("send returns OK, bulk strings and null", async () => {
    assert.equal(await client.send(["SET", key("s"), "value"]), "OK");
    assert.equal(await client.send(["GET", key("s")]), "value");
    assert.equal(await client.send(["GET", key("missing")]), null);
    assert.equal(await client.send(["PING"]), "PONG");
  });

  await t.step("send returns integers as numbers", async () => {
    assert.equal(await client.send(["INCR", key("n")]), 1);
    assert.equal(await client.send(["INCRBY", key("n"), "41"]), 42);
    assert.equal(await client.send(["EXISTS", key("n"), key("missing")]), 1);
    assert.equal(await client.send(["DEL", key("n")]), 1);
  });

  await t.step("send rejects with the server's message", async () => {
    await client.send(["SET", key("text"), "not a number"]);
    await assert.rejects(client.send(["INCR", key("text")]), /not an integer/);
    await assert.rejects(client.send(["GET"]), /wrong number of arguments/);
  });

  await t.step("replies keep unicode and large base64 payloads intact", async () => {
    const unicode = 'héllo ✓ 🎉 \u4e2d\u6587 "quoted" \\ back';
    const bytes = crypto.getRandomValues(new Uint8Array(48 * 1024));
    const big = bytes.toBase64().repeat(8);
    await client.send(["SET", key("u"), unicode]);
    await client.send(["SET", key("big"), big]);
    assert.equal(await client.send(["GET", key("u")]), unicode);
    assert.equal(await client.send(["GET", key("big")]), big);
    assert.equal(await client.send(["STRLEN", key("big")]), big.length);
  });

  await t.step("sendBytes returns bulk strings as raw bytes, and send keeps text", async () => {
    // Every byte value, which is not valid UTF-8: written by a script, so that any transport can.
    const write = await defineScript(
      "local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end " +
        "return redis.call('HSET', KEYS[1], 'raw', table.concat(t), 'text', ARGV[1])",
    );
    await client.eval(write, [key("b")], ["héllo ✓"]);
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const [raw, text, missing] = await client.sendBytes([
      "HMGET",
      key("b"),
      "raw",
      "text",
      "x",
    ]) as [
      Uint8Array,
      Uint8Array,
      null,
    ];
    assert.deepEqual([...raw], [...all]);
    assert.equal(new TextDecoder().decode(text), "héllo ✓");
    assert.equal(missing, null);
    const flat = await client.sendBytes(["HGETALL", key("b")]) as Uint8Array[];
    assert.ok(flat.every((v) => v instanceof Uint8Array));
    const lengths = new Map<string, number>();
    for (let i = 0; i < flat.length; i += 2) {
      lengths.set(new TextDecoder().decode(flat[i]), flat[i + 1].byteLength);
    }
    assert.deepEqual(lengths, new Map([["raw", 256], ["text", 10]]));
    assert.deepEqual(await client.sendBytes(["HGETALL", key("missing")]), []);
    assert.equal(await client.send(["HGET", key("b"), "text"]), "héllo ✓");
  });

  await t.step(
    "bytes arguments go out raw on a binary transport, and are refused on others",
    async () => {
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const length = await defineScript("return string.len(ARGV[1])");
      if (!client.binary) {
        await assert.rejects(client.send(["SET", key("c"), all]), /Cannot send bytes/);
        await assert.rejects(client.eval(length, [key("c")], [all]), /Cannot send bytes/);
        return;
      }
      await client.send(["HSET", key("c"), "raw", all]);
      assert.deepEqual([...await client.sendBytes(["HGET", key("c"), "raw"]) as Uint8Array], [
        ...all,
      ]);
      assert.equal(await client.eval(length, [key("c")], [all]), 256);
      const [set] = await client.pipeline([["SET", key("d"), all.subarray(1, 3)]]);
      assert.equal(set, "OK");
      assert.deepEqual([...await client.sendBytes(["GET", key("d")]) as Uint8Array], [1, 2]);
    },
  );

  await t.step("pipeline returns one reply or error per command, in order", async () => {
    const replies = await client.pipeline([
      ["SET", key("p"), "1"],
      ["INCR", key("p")],
      ["HSET", key("p"), "f", "v"],
      ["INCR", key("p")],
      ["GET", key("p")],
      ["GET", key("missing")],
    ]);
    assert.equal(replies.length, 6);
    assert.deepEqual(replies.slice(0, 2), ["OK", 2]);
    assert.ok(replies[2] instanceof Error);
    assert.match(replies[2].message, /WRONGTYPE/);
    assert.deepEqual(replies.slice(3), [3, "3", null]);
  });

  await t.step("pipeline of no commands returns an empty array", async () => {
    assert.deepEqual(await client.pipeline([]), []);
  });

  await t.step("nested array replies keep their RESP2 shape", async () => {
    const stream = key("stream");
    const first = await client.send(["XADD", stream, "*", "type", "queued", "n", "1"]);
    const second = await client.send(["XADD", stream, "*", "type", "done"]);
    assert.equal(typeof first, "string");
    assert.deepEqual(await client.send(["XRANGE", stream, "-", "+"]), [
      [first, ["type", "queued", "n", "1"]],
      [second, ["type", "done"]],
    ]);
    await client.send(["XGROUP", "CREATE", stream, "g", "0"]);
    assert.deepEqual(
      await client.send(["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", stream, ">"]),
      [[stream, [[first, ["type", "queued", "n", "1"]]]]],
    );
    await client.send(["HSET", key("h"), "a", "1", "b", "2"]);
    assert.deepEqual(await client.send(["HGETALL", key("h")]), ["a", "1", "b", "2"]);
    assert.deepEqual(await client.send(["HGETALL", key("missing")]), []);
    assert.deepEqual(await client.send(["MGET", key("s"), key("missing")]), ["value", null]);
    await client.send(["ZADD", key("z"), "1.5", "m"]);
    assert.deepEqual(await client.send(["ZRANGE", key("z"), "0", "-1", "WITHSCORES"]), [
      "m",
      "1.5",
    ]);
  });

  await t.step("eval runs a script and falls back to EVAL after SCRIPT FLUSH", async () => {
    const script = await defineScript("return {KEYS[1], ARGV[1], 42, redis.call('GET', KEYS[1])}");
    const expected = [key("s"), "arg", 42, "value"];
    assert.deepEqual(await client.eval(script, [key("s")], ["arg"]), expected);
    assert.equal(await target.scriptCached(script.sha, key("s")), true);
    await target.flushScripts();
    assert.equal(await target.scriptCached(script.sha, key("s")), false);
    assert.deepEqual(await client.eval(script, [key("s")], ["arg"]), expected);
    assert.deepEqual(await client.eval(script, [key("s")], ["arg"]), expected);
  });

  await t.step("eval returns integers and nil, and rejects with the script's error", async () => {
    const count = await defineScript("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert.equal(await client.eval(count, [key("e")], ["5"]), 5);
    const nil = await defineScript("return redis.call('GET', KEYS[1])");
    assert.equal(await client.eval(nil, [key("missing")], []), null);
    const failing = await defineScript("return redis.error_reply('ERR custom failure')");
    await assert.rejects(client.eval(failing, [], []), /custom failure/);
  });

  await t.step("blocking returns null or a client whose blocking read times out", async () => {
    const blocking = client.blocking();
    if (blocking === null) return;
    const reply = await blocking.send(["XREAD", "BLOCK", "50", "STREAMS", key("idle"), "$"]);
    assert.equal(reply, null);
  });
}
