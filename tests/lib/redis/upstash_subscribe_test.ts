/** The Upstash REST subscription through the test proxy: SSE framing, billing, reopening after a drop. */
import assert from "node:assert/strict";
import { UpstashSubscription } from "../../../lib/redis/upstash_subscribe.ts";
import { redisCommand, type RedisServer, startRedis } from "../../support/redis_server.ts";
import { startUpstashProxy, type UpstashProxy } from "../../support/upstash_proxy.ts";

const TOKEN = "sub-token";

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

/** Resolves once `check` holds, polling every 5 ms; rejects after `ms`. */
async function until(check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Cannot see ${what}: timed out`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("Upstash proxy streams /subscribe as Server-Sent Events and bills as Upstash does", async () => {
  await withProxy(async (proxy, server) => {
    const response = await fetch(`${proxy.url}/subscribe/ch`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream" },
    });
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    const read = async (want: string) => {
      const deadline = Date.now() + 3_000;
      while (!seen.includes(want)) {
        const next = await Promise.race([
          reader.read(),
          new Promise<null>((resolve) => setTimeout(() => resolve(null), deadline - Date.now())),
        ]);
        if (!next || next.done) throw new Error(`Cannot read ${JSON.stringify(want)}: saw ${seen}`);
        seen += next.value;
      }
    };
    await read("data: subscribe,ch,1\n\n");
    assert.equal(proxy.commands, 1, "one command per subscribe");
    // A PUBLISH from a script (one EVAL), from /publish, and from a plain command all reach it.
    await redisCommand(server.port, ["EVAL", "redis.call('PUBLISH', 'ch', 'a,b')", "0"]);
    await read("data: message,ch,a,b\n\n");
    const published = await fetch(`${proxy.url}/publish/ch/two`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.deepEqual(await published.json(), { result: 1 });
    await read("data: message,ch,two\n\n");
    // subscribe 1 + two messages delivered + one /publish
    assert.equal(proxy.commands, 4);
    await reader.cancel();
    await until(() => proxy.subscribers === 0, "the subscription end");
  });
});

Deno.test("UpstashSubscription hears messages and reopens with backoff after a drop", async () => {
  await withProxy(async (proxy, server) => {
    const heard: string[] = [];
    let opens = 0;
    const sub = new UpstashSubscription({
      url: proxy.url,
      token: TOKEN,
      channel: "wake",
      onMessage: (payload) => heard.push(payload),
      onOpen: () => opens++,
      backoffMs: 20,
    });
    try {
      await until(() => sub.live, "the subscription open");
      await redisCommand(server.port, ["PUBLISH", "wake", "j"]);
      await until(() => heard.length === 1, "the first message");
      proxy.dropSubscriptions();
      await until(() => opens === 2 && sub.live, "the reopened subscription");
      await redisCommand(server.port, ["PUBLISH", "wake", "f"]);
      await until(() => heard.length === 2, "the message after the reopen");
      assert.deepEqual(heard, ["j", "f"]);
      assert.equal(proxy.subscribers, 1, "one long-lived request per subscription");
      assert.equal(proxy.commands, 4, "two subscribes and two messages");
    } finally {
      await sub.close();
    }
    await until(() => proxy.subscribers === 0, "the subscription end");
  });
});

Deno.test("UpstashSubscription keeps retrying while the proxy refuses it", async () => {
  await withProxy(async (proxy) => {
    const drops: string[] = [];
    const sub = new UpstashSubscription({
      url: proxy.url,
      token: "wrong",
      channel: "wake",
      onMessage: () => {},
      onDrop: (reason) => drops.push(reason),
      backoffMs: 5,
      backoffMaxMs: 10,
    });
    try {
      await until(() => drops.length >= 3, "three refused attempts");
      assert.match(drops[0], /HTTP 401/);
      assert.equal(sub.live, false);
    } finally {
      await sub.close();
    }
  });
});
