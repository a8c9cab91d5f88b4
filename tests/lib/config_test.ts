/** Tests of the configuration: defaults, parsing, the broker choice and refused values. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../lib/config.ts";

const KEY = { JWT_SECRET: "a-test-secret-that-is-long-enough" };

function refuses(env: Record<string, string>, pattern: RegExp): void {
  assert.throws(
    () => loadConfig(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
      assert.equal(error.name, "ConfigError");
      assert.match(error.message, pattern);
      return true;
    },
  );
}

Deno.test("loadConfig applies the documented defaults", () => {
  const config = loadConfig(KEY);
  assert.equal(config.PORT, 8000);
  assert.equal(config.HOST, "0.0.0.0");
  assert.equal(config.REDIS_URL, undefined);
  assert.equal(config.UPSTASH_REDIS_REST_URL, undefined);
  assert.equal(config.UPSTASH_REDIS_REST_TOKEN, undefined);
  assert.equal(config.REDIS_PREFIX, "img:");
  assert.equal(config.ROLE, "all");
  assert.equal(config.WORKER_CONCURRENCY, 8);
  assert.equal(config.GROK_API, "https://api.x.ai/v1");
  assert.equal(config.XAI_API_KEY, undefined);
  assert.equal(typeof config.GROK_MODEL, "string");
  assert.ok(config.GROK_MODEL.length > 0);
  assert.equal(config.GROK_RESPONSE_FORMAT, "b64_json");
  assert.deepEqual(config.IMAGE_HOSTS, ["imgen.x.ai"]);
  assert.equal(config.JWT_SECRET, KEY.JWT_SECRET);
  assert.equal(config.JWT_PUBLIC_KEY, undefined);
  assert.equal(config.JWT_JWKS_URL, undefined);
  assert.equal(config.JWT_ALGORITHMS, undefined);
  assert.equal(config.JWT_ISSUER, undefined);
  assert.equal(config.JWT_AUDIENCE, undefined);
  assert.equal(config.JOB_LEASE_MS, 30_000);
  assert.equal(config.JOB_MAX_ATTEMPTS, 5);
  assert.equal(config.RATE_LIMIT_PER_MINUTE, 60);
  assert.equal(config.CORS_ORIGINS, undefined);
  assert.equal(config.WS_MAX_SUBSCRIPTIONS, 1000);
  assert.equal(config.SSE_MAX_BUFFERED_BYTES, 1024 * 1024);
  assert.equal(config.devMode, false);
  assert.equal(config.broker, "memory");
  assert.equal(config.REDIS_CLUSTER_URLS, undefined);
  assert.equal(config.JOB_PARTITIONS, 1);
});

Deno.test("loadConfig reads values from the environment", () => {
  const config = loadConfig({
    ...KEY,
    PORT: "9001",
    HOST: "127.0.0.1",
    REDIS_PREFIX: "t1:",
    WORKER_CONCURRENCY: "3",
    GROK_API: "http://127.0.0.1:9999/v1",
    GROK_MODEL: "grok-test",
    GROK_RESPONSE_FORMAT: "url",
    JOB_LEASE_MS: "5000",
    JOB_MAX_ATTEMPTS: "2",
    RATE_LIMIT_PER_MINUTE: "7",
    JWT_ALGORITHMS: "HS256,HS512",
    JWT_ISSUER: "issuer",
    JWT_AUDIENCE: "audience",
  });
  assert.equal(config.PORT, 9001);
  assert.equal(config.HOST, "127.0.0.1");
  assert.equal(config.REDIS_PREFIX, "t1:");
  assert.equal(config.WORKER_CONCURRENCY, 3);
  assert.equal(config.GROK_API, "http://127.0.0.1:9999/v1");
  assert.equal(config.GROK_MODEL, "grok-test");
  assert.equal(config.GROK_RESPONSE_FORMAT, "url");
  assert.equal(config.JOB_LEASE_MS, 5000);
  assert.equal(config.JOB_MAX_ATTEMPTS, 2);
  assert.equal(config.RATE_LIMIT_PER_MINUTE, 7);
  assert.deepEqual(config.JWT_ALGORITHMS, ["HS256", "HS512"]);
  assert.equal(config.JWT_ISSUER, "issuer");
  assert.equal(config.JWT_AUDIENCE, "audience");
});

Deno.test("loadConfig ignores empty values and unrelated variables", () => {
  const config = loadConfig({ ...KEY, PORT: "", REDIS_URL: "", PATH: "/usr/bin", HOME: "/x" });
  assert.equal(config.PORT, 8000);
  assert.equal(config.broker, "memory");
  assert.equal("PATH" in config, false);
});

Deno.test("loadConfig refuses to start without a JWT key unless DEV_MODE=1", async (t) => {
  await t.step("with no key, naming every key variable", () => {
    refuses({}, /JWT_SECRET/);
    refuses({}, /JWT_PUBLIC_KEY/);
    refuses({}, /JWT_JWKS_URL/);
  });
  await t.step("with an empty JWT_SECRET", () => refuses({ JWT_SECRET: "" }, /JWT_SECRET/));
  await t.step("with DEV_MODE set to something other than 1", () => {
    refuses({ DEV_MODE: "true" }, /JWT_SECRET/);
  });
  await t.step("but starts in DEV_MODE=1", () => {
    const config = loadConfig({ DEV_MODE: "1" });
    assert.equal(config.devMode, true);
    assert.equal(config.JWT_SECRET, undefined);
  });
  await t.step("and accepts each kind of key alone", () => {
    assert.equal(loadConfig({ JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----" }).devMode, false);
    const jwks = loadConfig({ JWT_JWKS_URL: "http://127.0.0.1:1/jwks.json" });
    assert.equal(jwks.JWT_JWKS_URL, "http://127.0.0.1:1/jwks.json");
  });
  await t.step("and refuses two keys at once", () => {
    refuses({ ...KEY, JWT_JWKS_URL: "http://127.0.0.1:1/jwks.json" }, /JWT_SECRET/);
  });
});

Deno.test("loadConfig names the variable that holds a bad value", async (t) => {
  const cases: [string, string][] = [
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["ROLE", "boss"],
    ["GROK_RESPONSE_FORMAT", "x"],
    ["WORKER_CONCURRENCY", "0"],
    ["WORKER_CONCURRENCY", "1.5"],
    ["REDIS_URL", "http://x"],
    ["GROK_API", "not a url"],
    ["JOB_MAX_ATTEMPTS", "0"],
    ["RATE_LIMIT_PER_MINUTE", "-1"],
    ["JWT_ALGORITHMS", "none"],
    ["IMAGE_HOSTS", "evil.example/path"],
    ["UPSTASH_REDIS_REST_URL", "redis://x"],
    ["WS_MAX_SUBSCRIPTIONS", "0"],
    ["SSE_MAX_BUFFERED_BYTES", "10"],
    ["REDIS_CLUSTER_URLS", "http://127.0.0.1:7000"],
    ["REDIS_CLUSTER_URLS", "redis://127.0.0.1"],
    ["REDIS_CLUSTER_URLS", "redis://127.0.0.1:7000,127.0.0.1:7001"],
    ["REDIS_CLUSTER_URLS", " , "],
    ["JOB_PARTITIONS", "0"],
    ["JOB_PARTITIONS", "2.5"],
    ["JOB_PARTITIONS", "1025"],
  ];
  for (const [name, value] of cases) {
    await t.step(`${name}=${value}`, () => {
      const env: Record<string, string> = { ...KEY, [name]: value };
      if (name === "UPSTASH_REDIS_REST_URL") env.UPSTASH_REDIS_REST_TOKEN = "token";
      refuses(env, new RegExp(name));
    });
  }
});

Deno.test("loadConfig refuses a REDIS_PREFIX with a hash tag on a Redis Cluster", () => {
  const cluster = { ...KEY, REDIS_CLUSTER_URLS: "redis://127.0.0.1:7000" };
  refuses({ ...cluster, REDIS_PREFIX: "img{x}:" }, /REDIS_PREFIX/);
  assert.equal(loadConfig({ ...cluster, REDIS_PREFIX: "img:" }).broker, "cluster");
  assert.equal(loadConfig({ ...KEY, REDIS_PREFIX: "img{x}:" }).REDIS_PREFIX, "img{x}:");
});

Deno.test("loadConfig parses IMAGE_HOSTS and CORS_ORIGINS as comma-separated lists", () => {
  const config = loadConfig({
    ...KEY,
    IMAGE_HOSTS: "imgen.x.ai, 127.0.0.1:8080 ,,[::1]:9000",
    CORS_ORIGINS: "https://a.example, http://localhost:3000",
  });
  assert.deepEqual(config.IMAGE_HOSTS, ["imgen.x.ai", "127.0.0.1:8080", "[::1]:9000"]);
  assert.deepEqual(config.CORS_ORIGINS, ["https://a.example", "http://localhost:3000"]);
});

Deno.test("loadConfig picks the broker from the variables", async (t) => {
  await t.step("redis from REDIS_URL", () => {
    for (const url of ["redis://127.0.0.1:6390/0", "rediss://user:pw@127.0.0.1:6390"]) {
      const config = loadConfig({ ...KEY, REDIS_URL: url });
      assert.equal(config.broker, "redis");
      assert.equal(config.REDIS_URL, url);
    }
  });
  await t.step("upstash from the REST URL and token", () => {
    const config = loadConfig({
      ...KEY,
      UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079",
      UPSTASH_REDIS_REST_TOKEN: "token",
    });
    assert.equal(config.broker, "upstash");
  });
  await t.step("cluster from REDIS_CLUSTER_URLS, a list of seed nodes", () => {
    const config = loadConfig({
      ...KEY,
      REDIS_CLUSTER_URLS: "redis://127.0.0.1:7000, redis://:s%40cret@node-2.internal:7001,,",
      JOB_PARTITIONS: "6",
    });
    assert.equal(config.broker, "cluster");
    assert.deepEqual(config.REDIS_CLUSTER_URLS, [
      "redis://127.0.0.1:7000",
      "redis://:s%40cret@node-2.internal:7001",
    ]);
    assert.equal(config.JOB_PARTITIONS, 6);
  });
  await t.step("memory from neither", () => assert.equal(loadConfig(KEY).broker, "memory"));
  await t.step("refusing an Upstash URL without its token", () => {
    refuses(
      { ...KEY, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079" },
      /UPSTASH_REDIS_REST_TOKEN/,
    );
  });
  await t.step("refusing both REDIS_URL and Upstash", () => {
    refuses({
      ...KEY,
      REDIS_URL: "redis://127.0.0.1:6390",
      UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079",
      UPSTASH_REDIS_REST_TOKEN: "token",
    }, /REDIS_URL/);
  });
});

Deno.test("loadConfig refuses REDIS_CLUSTER_URLS beside another broker, naming both", async (t) => {
  const cluster = { ...KEY, REDIS_CLUSTER_URLS: "redis://127.0.0.1:7000" };
  await t.step("with REDIS_URL", () => {
    refuses({ ...cluster, REDIS_URL: "redis://127.0.0.1:6390" }, /REDIS_CLUSTER_URLS.*REDIS_URL/);
  });
  await t.step("with Upstash", () => {
    refuses(
      {
        ...cluster,
        UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079",
        UPSTASH_REDIS_REST_TOKEN: "token",
      },
      /REDIS_CLUSTER_URLS.*UPSTASH_REDIS_REST_URL/,
    );
  });
});

Deno.test("loadConfig refuses a split ROLE without Redis", async (t) => {
  for (const role of ["worker", "api"]) {
    await t.step(`ROLE=${role} alone is refused`, () => refuses({ ...KEY, ROLE: role }, /ROLE/));
    await t.step(`ROLE=${role} with REDIS_URL is accepted`, () => {
      const config = loadConfig({ ...KEY, ROLE: role, REDIS_URL: "redis://127.0.0.1:6390" });
      assert.equal(config.ROLE, role);
    });
    await t.step(`ROLE=${role} with REDIS_CLUSTER_URLS is accepted`, () => {
      const seeds = "redis://127.0.0.1:7000";
      assert.equal(loadConfig({ ...KEY, ROLE: role, REDIS_CLUSTER_URLS: seeds }).ROLE, role);
    });
  }
});

Deno.test("loadConfig keeps Upstash within its request and pending-entry limits", async (t) => {
  const upstash = {
    ...KEY,
    UPSTASH_REDIS_REST_URL: "https://x.upstash.io",
    UPSTASH_REDIS_REST_TOKEN: "t",
  };
  await t.step("images default to 5 MiB over Upstash", () => {
    assert.equal(loadConfig(upstash).DOWNLOAD_MAX_BYTES, 5 * 1024 * 1024);
    assert.equal(loadConfig(KEY).DOWNLOAD_MAX_BYTES, 20 * 1024 * 1024);
  });
  await t.step("a larger image cap is refused, naming the variable", () => {
    refuses({ ...upstash, DOWNLOAD_MAX_BYTES: String(8 * 1024 * 1024) }, /DOWNLOAD_MAX_BYTES/);
  });
  await t.step("more than 1000 pending entries per consumer is refused", () => {
    refuses({ ...upstash, WORKER_CONCURRENCY: "1001" }, /WORKER_CONCURRENCY/);
  });
});

Deno.test("loadConfig drains within Deno Deploy's 5 s unless told otherwise", () => {
  assert.equal(loadConfig({ ...KEY, DENO_DEPLOYMENT_ID: "abc" }).DRAIN_TIMEOUT_MS, 4_000);
  assert.equal(
    loadConfig({ ...KEY, DENO_DEPLOYMENT_ID: "abc", DRAIN_TIMEOUT_MS: "2000" }).DRAIN_TIMEOUT_MS,
    2_000,
  );
  assert.equal(loadConfig(KEY).DRAIN_TIMEOUT_MS, 10_000);
});

Deno.test("loadConfig reads the v1.1 webhook and Socket.IO settings", async (t) => {
  await t.step("defaults: no webhooks, no bridge, event notify", () => {
    const config = loadConfig(KEY);
    assert.equal(config.WEBHOOK_SECRET, undefined);
    assert.deepEqual(config.WEBHOOK_HOSTS, []);
    assert.equal(config.socketIoUrl, undefined);
    assert.equal(config.NOTIFY_SOCKET_IO_EVENT, "notify");
  });
  await t.step("a whsec_ secret and listed hosts", () => {
    const secret = `whsec_${new Uint8Array(24).fill(7).toBase64()}`;
    const config = loadConfig({
      ...KEY,
      WEBHOOK_SECRET: secret,
      WEBHOOK_HOSTS: "a.test, b.test:8443",
    });
    assert.equal(config.WEBHOOK_SECRET, secret);
    assert.deepEqual(config.WEBHOOK_HOSTS, ["a.test", "b.test:8443"]);
  });
  await t.step("a secret that is not whsec_ and base64 of 16 bytes is refused by name", () => {
    refuses({ ...KEY, WEBHOOK_SECRET: "hunter2" }, /WEBHOOK_SECRET/);
    refuses({ ...KEY, WEBHOOK_SECRET: "whsec_AAAA$$$$AAAA" }, /WEBHOOK_SECRET/);
    refuses({ ...KEY, WEBHOOK_SECRET: "whsec_c2hvcnQ=" }, /WEBHOOK_SECRET/);
  });
  await t.step(
    "the seed's PORT_MESSAGES_USERS names the bridge unless NOTIFY_SOCKET_IO_URL is set",
    () => {
      assert.equal(
        loadConfig({ ...KEY, PORT_MESSAGES_USERS: "3001" }).socketIoUrl,
        "http://127.0.0.1:3001",
      );
      const both = { ...KEY, PORT_MESSAGES_USERS: "3001", NOTIFY_SOCKET_IO_URL: "http://n.test:9" };
      assert.equal(loadConfig(both).socketIoUrl, "http://n.test:9");
      refuses({ ...KEY, NOTIFY_SOCKET_IO_URL: "ftp://x" }, /NOTIFY_SOCKET_IO_URL/);
      refuses({ ...KEY, PORT_MESSAGES_USERS: "0" }, /PORT_MESSAGES_USERS/);
    },
  );
});
