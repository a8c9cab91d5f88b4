/** The RedisClient contract over TCP and Upstash REST, and the Upstash client's own failures. */
import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../../lib/errors.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import type { RedisClient } from "../../../lib/redis/types.ts";
import { createUpstashClient } from "../../../lib/redis/upstash.ts";
import { startRedis } from "../../support/redis_server.ts";
import { startUpstashProxy } from "../../support/upstash_proxy.ts";
import { redisClientContract } from "./client_contract.ts";

const TOKEN = "contract-token";

redisClientContract("Upstash", async ({ urls: [redisUrl] }) => {
  const proxy = await startUpstashProxy({ redisUrl, token: TOKEN });
  const client = createUpstashClient({ url: proxy.url, token: TOKEN });
  return {
    ...client,
    async close() {
      await client.close();
      await proxy.close();
    },
  } satisfies RedisClient;
});

redisClientContract("TCP", ({ urls: [url] }) => createTcpClient({ url }));

Deno.test("Upstash client sends a pipeline as one HTTP request", async () => {
  const server = await startRedis();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token: TOKEN });
  const client = createUpstashClient({ url: proxy.url, token: TOKEN });
  try {
    const before = proxy.requests;
    const replies = await client.pipeline([["SET", "k", "1"], ["INCR", "k"], ["GET", "k"]]);
    assert.deepEqual(replies, ["OK", 2, "2"]);
    assert.equal(proxy.requests - before, 1);
    assert.equal(proxy.commands, 3);
    assert.equal(client.blocking(), null);
  } finally {
    await client.close();
    await proxy.close();
    await server.stop();
  }
});

Deno.test("Upstash client rejects with Unauthorized for a wrong token", async () => {
  const server = await startRedis();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token: TOKEN });
  const client = createUpstashClient({ url: proxy.url, token: "wrong" });
  try {
    await assert.rejects(client.send(["PING"]), { message: "Unauthorized" });
    await assert.rejects(client.pipeline([["PING"]]), { message: "Unauthorized" });
    assert.equal(proxy.commands, 0);
  } finally {
    await client.close();
    await proxy.close();
    await server.stop();
  }
});

Deno.test("Upstash client times out a request that gets no answer", async () => {
  const release = Promise.withResolvers<void>();
  const hanging = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    await release.promise;
    return Response.json({ result: "late" });
  });
  const client = createUpstashClient({
    url: `http://127.0.0.1:${hanging.addr.port}`,
    token: TOKEN,
    timeoutMs: 200,
  });
  try {
    const started = Date.now();
    await assert.rejects(client.send(["PING"]), BrokerUnavailableError);
    assert.ok(Date.now() - started < 5_000);
  } finally {
    release.resolve();
    await client.close();
    await hanging.shutdown();
  }
});

Deno.test("Upstash client reports an unreachable server as BrokerUnavailableError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const client = createUpstashClient({ url: `http://127.0.0.1:${port}`, token: TOKEN, retries: 0 });
  try {
    await assert.rejects(
      client.send(["PING"]),
      (error) =>
        error instanceof BrokerUnavailableError && /Cannot reach Upstash/.test(error.message),
    );
  } finally {
    await client.close();
  }
});

Deno.test("Upstash client checks its options", () => {
  assert.throws(
    () => createUpstashClient({ url: "http://127.0.0.1:1", token: "t", timeoutMs: 0 }),
    RangeError,
  );
  assert.throws(
    () => createUpstashClient({ url: "http://127.0.0.1:1", token: "t", retries: -1 }),
    RangeError,
  );
});

Deno.test({
  name:
    "TCP client lets a blocking read outlast the command deadline, which still bounds other commands",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startRedis();
    const client = createTcpClient({ url: server.url, commandTimeoutMs: 100 });
    const blocking = client.blocking()!;
    try {
      const read = await blocking.send(["XREAD", "BLOCK", "400", "STREAMS", "quiet", "$"]);
      assert.equal(read, null, "the read waited its BLOCK out instead of timing out at 100 ms");
      Deno.kill(server.pid, "SIGSTOP");
      try {
        await assert.rejects(client.send(["PING"]), BrokerUnavailableError);
      } finally {
        Deno.kill(server.pid, "SIGCONT");
      }
    } finally {
      await client.close();
      await server.stop();
    }
  },
});
