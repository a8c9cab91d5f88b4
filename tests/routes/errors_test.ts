/** Server faults: 503 only for "not now" failures, 500 for the rest, and every cause logged at error level. */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { BrokerUnavailableError, isTransient } from "../../lib/errors.ts";
import type { Broker } from "../../lib/queue/types.ts";
import { createUpstashClient } from "../../lib/redis/upstash.ts";
import { startRedis } from "../support/redis_server.ts";
import { startUpstashProxy } from "../support/upstash_proxy.ts";
import { appWith, bearer, countingProvider, startTestService } from "../support/app.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const SCRIPT_ERROR =
  "ERR Error running script (call to f_0123): @user_script:3: Script attempted to access nonexistent global variable 'x'";

/** Collects log records of the service while `fn` runs. */
async function withLogs(fn: (records: LogRecord[]) => Promise<void>): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record: LogRecord) => void records.push(record) },
    loggers: [{ category: ["imagejobs"], lowestLevel: "debug", sinks: ["memory"] }],
  });
  try {
    await fn(records);
  } finally {
    await reset();
  }
}

/** The error-level lines, rendered. */
function errorLines(records: LogRecord[]): string[] {
  return records.filter((r) => r.level === "error").map((r) =>
    r.message.map((part) => typeof part === "string" ? part : String(part)).join("")
  );
}

/** A broker whose `get` throws `error`. */
function failingGet(broker: Broker, error: Error): Broker {
  return new Proxy(broker, {
    get(target, name, receiver) {
      if (name === "get") return () => Promise.reject(error);
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test({
  name: "a broker error answers 503 only when it is transient, else 500, and is logged",
  ...opts,
  async fn(t) {
    const service = await startTestService({ provider: countingProvider() });
    const token = await service.token("alice");
    const cases: [string, Error, number, string][] = [
      ["a broken script's ERR reply", new Error(SCRIPT_ERROR), 500, "internal"],
      ["an OOM reply", new Error("OOM command not allowed"), 503, "unavailable"],
      [
        "an unreachable store",
        new BrokerUnavailableError("Cannot reach Redis"),
        503,
        "unavailable",
      ],
      ["a LOADING reply", new Error("LOADING Redis is loading the dataset"), 503, "unavailable"],
    ];
    try {
      for (const [name, error, status, code] of cases) {
        await t.step(name, async () => {
          await withLogs(async (records) => {
            const app = appWith(service, {
              broker: failingGet(service.runtime.deps.broker, error),
            });
            const response = await app.request("/v1/jobs/some-job", { headers: bearer(token) });
            assert.equal(response.status, status);
            const body = await response.json();
            assert.deepEqual(Object.keys(body), ["error"]);
            assert.equal(body.error.code, code);
            assert.equal(response.headers.has("Retry-After"), status === 503);
            const lines = errorLines(records);
            assert.ok(lines.some((line) => line.includes(error.message)), lines.join("\n"));
            assert.ok(!JSON.stringify(body).includes(error.message), "the cause stays in the log");
          });
        });
      }
      await t.step("a cause that carries a token is logged without it", async () => {
        await withLogs(async (records) => {
          const leak = new Error("ERR bad value", { cause: new Error(`token was ${token}`) });
          const app = appWith(service, { broker: failingGet(service.runtime.deps.broker, leak) });
          const response = await app.request("/v1/jobs/some-job", { headers: bearer(token) });
          assert.equal(response.status, 500);
          await response.body?.cancel();
          const lines = errorLines(records).join("\n");
          assert.match(lines, /ERR bad value <- Error: token was \[REDACTED\]/);
          assert.ok(!lines.includes(token));
        });
      });
    } finally {
      await service.close();
    }
  },
});

/** A front for the Upstash proxy that can answer like a broken script or a failing gateway instead. */
function faultyFront(target: string) {
  let mode: "pass" | "script" | "gateway" = "pass";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    const body = await request.text();
    if (mode === "script" && /"EVAL(SHA)?"/.test(body)) {
      return Response.json({ error: SCRIPT_ERROR }, { status: 400 });
    }
    if (mode === "gateway") return new Response("<html>502 Bad Gateway</html>", { status: 502 });
    return await fetch(new URL(url.pathname, target), {
      method: "POST",
      headers: request.headers,
      body,
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    set: (next: typeof mode) => void (mode = next),
    close: () => server.shutdown(),
  };
}

Deno.test({
  name: "over Upstash, an ERR reply is a 500 while a failed gateway or a lost Redis is a 503",
  ...opts,
  async fn(t) {
    const redis = await startRedis();
    const token = crypto.randomUUID();
    const proxy = await startUpstashProxy({ redisUrl: redis.url, token });
    const front = faultyFront(proxy.url);
    const service = await startTestService({
      env: {
        UPSTASH_REDIS_REST_URL: front.url,
        UPSTASH_REDIS_REST_TOKEN: token,
        REDIS_PREFIX: `errors-${crypto.randomUUID().slice(0, 8)}:`,
      },
      provider: countingProvider(),
    });
    const jwt = await service.token("alice");
    const submit = () =>
      service.request("/v1/images", {
        method: "POST",
        headers: bearer(jwt),
        body: JSON.stringify({ prompt: "a fox" }),
      });
    try {
      await t.step("the transport keeps the class of each answer", async () => {
        const client = createUpstashClient({ url: front.url, token, retries: 0 });
        front.set("script");
        const permanent = await client.eval({ source: "return 1", sha: "0".repeat(40) }, [], [])
          .catch((error) => error);
        assert.equal(permanent.message, SCRIPT_ERROR);
        assert.equal(isTransient(permanent), false);
        front.set("gateway");
        await assert.rejects(client.send(["PING"]), BrokerUnavailableError);
        front.set("pass");
        assert.equal(await client.send(["PING"]), "PONG");
      });
      await t.step("a broken script answers 500 and logs its reply", async () => {
        await withLogs(async (records) => {
          front.set("script");
          const response = await submit();
          assert.equal(response.status, 500);
          assert.equal((await response.json()).error.code, "internal");
          assert.ok(errorLines(records).some((line) => line.includes("Error running script")));
        });
      });
      await t.step("a gateway answering 502 is a 503 with Retry-After", async () => {
        front.set("gateway");
        const response = await submit();
        assert.equal(response.status, 503);
        assert.ok(Number(response.headers.get("Retry-After")) >= 1);
        assert.equal((await response.json()).error.code, "unavailable");
      });
      await t.step("a proxy that lost its Redis (ERR with HTTP 500) is a 503", async () => {
        front.set("pass");
        assert.equal((await submit()).status, 202);
        await redis.kill();
        const response = await submit();
        assert.equal(response.status, 503);
        assert.equal((await response.json()).error.code, "unavailable");
      });
    } finally {
      await service.close();
      await front.close();
      await proxy.close();
      await redis.stop();
    }
  },
});
