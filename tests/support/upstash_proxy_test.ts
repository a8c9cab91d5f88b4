/** Tests of the Upstash-compatible test proxy: auth, encodings, pipelines, transactions. */
import assert from "node:assert/strict";
import { redisCommand, type RedisServer, startRedis } from "./redis_server.ts";
import { startUpstashProxy, type UpstashProxy } from "./upstash_proxy.ts";

const TOKEN = "proxy-token";

async function withProxy(run: (proxy: UpstashProxy, server: RedisServer) => Promise<void>) {
  const server = await startRedis();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token: TOKEN });
  try {
    await run(proxy, server);
  } finally {
    await proxy.close();
    await server.stop();
  }
}

async function post(
  proxy: UpstashProxy,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${proxy.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

const b64 = (text: string) => new TextEncoder().encode(text).toBase64();

Deno.test("Upstash proxy answers 401 without the right bearer token", async () => {
  await withProxy(async (proxy) => {
    for (const headers of [{ authorization: "Bearer wrong" }, { authorization: "" }]) {
      const { status, json } = await post(proxy, "/", ["PING"], headers);
      assert.equal(status, 401);
      assert.deepEqual(json, { error: "Unauthorized" });
    }
    const query = await fetch(`${proxy.url}/?_token=${TOKEN}`, {
      method: "POST",
      body: JSON.stringify(["PING"]),
    });
    assert.deepEqual(await query.json(), { result: "PONG" });
    assert.equal(proxy.commands, 1);
  });
});

Deno.test("Upstash proxy runs one command and answers 400 with a command error", async () => {
  await withProxy(async (proxy, server) => {
    assert.deepEqual(await post(proxy, "/", ["SET", "k", "v", "EX", 100]), {
      status: 200,
      json: { result: "OK" },
    });
    assert.equal(await redisCommand(server.port, ["GET", "k"]), "v");
    assert.deepEqual((await post(proxy, "/", ["GET", "missing"])).json, { result: null });
    const failed = await post(proxy, "/", ["INCR", "k"]);
    assert.equal(failed.status, 400);
    assert.deepEqual(failed.json, { error: "ERR value is not an integer or out of range" });
    assert.equal((await post(proxy, "/", { not: "a command" })).status, 400);
  });
});

Deno.test("Upstash proxy base64-encodes every string except OK when asked", async () => {
  await withProxy(async (proxy) => {
    const base64 = { "upstash-encoding": "base64" };
    assert.deepEqual((await post(proxy, "/", ["SET", "k", "héllo 🎉"], base64)).json, {
      result: "OK",
    });
    assert.deepEqual((await post(proxy, "/", ["GET", "k"], base64)).json, {
      result: b64("héllo 🎉"),
    });
    assert.deepEqual((await post(proxy, "/", ["PING"], base64)).json, { result: b64("PONG") });
    assert.deepEqual((await post(proxy, "/", ["STRLEN", "k"], base64)).json, { result: 11 });
    await post(proxy, "/", ["XADD", "s", "1-1", "f", "v"]);
    assert.deepEqual((await post(proxy, "/", ["XRANGE", "s", "-", "+"], base64)).json, {
      result: [[b64("1-1"), [b64("f"), b64("v")]]],
    });
    assert.deepEqual((await post(proxy, "/", ["GET", "k"])).json, { result: "héllo 🎉" });
    const pipeline = await post(proxy, "/pipeline", [["SET", "a", "1"], ["GET", "a"]], base64);
    assert.deepEqual(pipeline.json, [{ result: "OK" }, { result: b64("1") }]);
  });
});

Deno.test("Upstash proxy rejects blocking commands as Upstash does", async () => {
  await withProxy(async (proxy) => {
    const blocking = [
      ["BLPOP", "q", "1"],
      ["BRPOP", "q", "1"],
      ["BLMOVE", "a", "b", "LEFT", "RIGHT", "1"],
      ["BZPOPMIN", "z", "1"],
      ["BZPOPMAX", "z", "1"],
      ["XREAD", "BLOCK", "10", "STREAMS", "s", "$"],
      ["XREADGROUP", "GROUP", "g", "c", "block", "10", "STREAMS", "s", ">"],
      ["SUBSCRIBE", "ch"],
      ["PSUBSCRIBE", "ch*"],
      ["MONITOR"],
      ["WAIT", "1", "10"],
    ];
    for (const command of blocking) {
      const { status, json } = await post(proxy, "/", command);
      assert.equal(status, 400, command[0]);
      assert.match((json as { error: string }).error, /not available/);
    }
    assert.equal(proxy.commands, 0);
    assert.deepEqual((await post(proxy, "/", ["XREAD", "STREAMS", "s", "0"])).json, {
      result: null,
    });
  });
});

Deno.test("Upstash proxy forwards a pipeline with per-command errors", async () => {
  await withProxy(async (proxy) => {
    const { status, json } = await post(proxy, "/pipeline", [
      ["SET", "k", "text"],
      ["INCR", "k"],
      ["BLPOP", "q", "1"],
      ["APPEND", "k", "!"],
      ["GET", "k"],
    ]);
    assert.equal(status, 200);
    assert.deepEqual(json, [
      { result: "OK" },
      { error: "ERR value is not an integer or out of range" },
      { error: "ERR Command is not available: 'BLPOP'" },
      { result: 5 },
      { result: "text!" },
    ]);
    assert.equal(proxy.commands, 4);
  });
});

Deno.test("Upstash proxy runs multi-exec as one transaction", async () => {
  await withProxy(async (proxy) => {
    const ok = await post(proxy, "/multi-exec", [["SET", "k", "1"], ["HSET", "k", "f", "v"], [
      "INCR",
      "k",
    ]]);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, [
      { result: "OK" },
      { error: "WRONGTYPE Operation against a key holding the wrong kind of value" },
      { result: 2 },
    ]);
    const aborted = await post(proxy, "/multi-exec", [["SET", "k", "9"], ["GET"]]);
    assert.equal(aborted.status, 400);
    assert.match((aborted.json as { error: string }).error, /wrong number of arguments/);
    assert.deepEqual((await post(proxy, "/", ["GET", "k"])).json, { result: "2" });
    const refused = await post(proxy, "/multi-exec", [["SET", "k", "3"], ["BLPOP", "q", "1"]]);
    assert.equal(refused.status, 400);
  });
});

Deno.test("Upstash proxy reconnects after redis-server restarts", async () => {
  await withProxy(async (proxy, server) => {
    assert.deepEqual((await post(proxy, "/", ["PING"])).json, { result: "PONG" });
    await server.kill();
    const down = await post(proxy, "/", ["PING"]);
    assert.equal(down.status, 500);
    await server.restart();
    assert.deepEqual((await post(proxy, "/", ["PING"])).json, { result: "PONG" });
  });
});
