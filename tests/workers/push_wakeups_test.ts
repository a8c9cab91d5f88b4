/**
 * Push wake-ups over Upstash, through the REST proxy: an API process and a worker process (each its own
 * runtime, so nothing is nudged in memory) on one real redis-server. Commands are counted by the proxy.
 */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { loadConfig } from "../../lib/config.ts";
import { RetryableError } from "../../lib/errors.ts";
import { createRedisBroker } from "../../lib/queue/redis.ts";
import { createUpstashClient } from "../../lib/redis/upstash.ts";
import { type Runtime, startRuntime, sweepOnce } from "../../main.ts";
import { bearer, countingProvider, delay, signToken, TEST_SECRET, until } from "../support/app.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { startUpstashProxy, type UpstashProxy } from "../support/upstash_proxy.ts";
import { SECRET, startReceiver } from "../lib/webhooks/helpers.ts";
import { startSocketIoServer } from "../support/socket_io_server.ts";

const TOKEN = "push-token";

interface Deployment {
  proxy: UpstashProxy;
  api: Runtime;
  worker: Runtime;
  provider: ReturnType<typeof countingProvider>;
  token: string;
}

async function withDeployment(
  run: (d: Deployment) => Promise<void>,
  { safetyMs = 3_600_000, env = {}, gate, fail }: {
    safetyMs?: number;
    env?: Record<string, string>;
    gate?: Promise<void>;
    fail?: (call: number) => Error | undefined;
  } = {},
): Promise<void> {
  const server: RedisServer = await startRedis();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token: TOKEN });
  const base = {
    JWT_SECRET: TEST_SECRET,
    UPSTASH_REDIS_REST_URL: proxy.url,
    UPSTASH_REDIS_REST_TOKEN: TOKEN,
    REDIS_PREFIX: `push-${crypto.randomUUID().slice(0, 8)}:`,
    RATE_LIMIT_PER_MINUTE: "1000",
    ...env,
  };
  const log = getLogger(["imagejobs", "test"]);
  const provider = countingProvider({ gate, fail });
  const worker = await startRuntime(loadConfig({ ...base, ROLE: "worker" }), log, {
    provider,
    safetyMs,
    workerOptions: { backoffBaseMs: 200, backoffMaxMs: 200 },
  });
  const api = await startRuntime(loadConfig({ ...base, ROLE: "api" }), log, { safetyMs });
  try {
    await until(
      () => Boolean(worker.wakeups?.live && api.wakeups?.live),
      "both subscriptions open",
    );
    await run({ proxy, api, worker, provider, token: await signToken("push-user") });
  } finally {
    await Promise.allSettled([api.close({ drainMs: 500 }), worker.close({ drainMs: 500 })]);
    await proxy.close();
    await server.stop();
  }
}

async function submit(d: Deployment): Promise<string> {
  const response = await d.api.app.request("/v1/images", {
    method: "POST",
    headers: bearer(d.token),
    body: JSON.stringify({ prompt: "a lighthouse at dusk" }),
  });
  assert.equal(response.status, 202);
  return (await response.json()).id;
}

async function status(d: Deployment, id: string): Promise<string> {
  const response = await d.api.app.request(`/v1/jobs/${id}`, { headers: bearer(d.token) });
  return (await response.json()).status;
}

async function waitStatus(d: Deployment, id: string, want: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await status(d, id)) !== want) {
    if (Date.now() > deadline) throw new Error(`Cannot see job ${id} ${want} within ${ms} ms`);
    await delay(20);
  }
}

Deno.test("Over Upstash an idle deployment sends no command, and a submit elsewhere wakes the worker", async () => {
  await withDeployment(async (d) => {
    await delay(1_000); // start-up reads settle
    const before = d.proxy.commands;
    await delay(3_000);
    assert.equal(d.proxy.commands - before, 0, "an idle worker and relay wait for a wake-up");
    const started = Date.now();
    const id = await submit(d);
    // No safety poll within the hour: only the wake-up the submit published can start it.
    await waitStatus(d, id, "succeeded", 3_000);
    assert.ok(Date.now() - started < 3_000);
    assert.equal(d.provider.calls, 1);
  });
});

Deno.test("Over Upstash the relay hears a job's end from its wake-up, with a live subscriber", async () => {
  await withDeployment(async (d) => {
    const id = await submit(d);
    const response = await d.api.app.request(`/v1/jobs/${id}/events`, {
      headers: bearer(d.token, { accept: "text/event-stream" }),
    });
    assert.equal(response.status, 200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    const deadline = Date.now() + 3_000;
    while (!seen.includes("succeeded")) {
      const next = await Promise.race([reader.read(), delay(deadline - Date.now())]);
      if (!next || next.done) break;
      seen += next.value;
    }
    await reader.cancel();
    assert.match(seen, /succeeded/);
    if (Deno.env.get("PUSH_DEBUG")) console.log(Object.fromEntries(d.proxy.byName));
    // With a subscriber, polling would read every 500 ms; push reads once per wake-up.
    const before = d.proxy.commands;
    await delay(1_500);
    assert.ok(d.proxy.commands - before <= 1, `idle reads: ${d.proxy.commands - before}`);
  });
});

Deno.test("Over Upstash a cancel's wake-up stops the provider call at once, before any lease renewal", async () => {
  const gate = Promise.withResolvers<void>();
  await withDeployment(async (d) => {
    const id = await submit(d);
    await waitStatus(d, id, "running", 3_000);
    const response = await d.api.app.request(`/v1/jobs/${id}`, {
      method: "DELETE",
      headers: bearer(d.token),
    });
    assert.ok(response.status < 300);
    // The lease is 60 s, renewed every 20 s: only the "c" wake-up tells the worker this soon.
    await until(() => d.provider.aborted === 1, "the provider call aborted", 3_000);
    gate.resolve();
  }, { env: { JOB_LEASE_MS: "60000" }, gate: gate.promise });
});

Deno.test("Over Upstash the safety poll finds a job whose wake-up was never published", async (t) => {
  await withDeployment(async (d) => {
    // A producer that publishes nothing (another service, or a wake-up lost with the subscription).
    const client = createUpstashClient({ url: d.proxy.url, token: TOKEN });
    const silent = createRedisBroker(client, { prefix: d.worker.deps.config.REDIS_PREFIX });
    await t.step("the job waits for the safety poll, then runs", async () => {
      const probes = d.worker.wakeups!.probes;
      const job = await silent.submit({
        id: "silent-1",
        owner: "push-user",
        prompt: "a quiet pond",
      });
      assert.equal(job.created, true);
      await waitStatus(d, "silent-1", "succeeded", 5_000);
      assert.ok(d.worker.wakeups!.probes > probes, "the safety poll ran");
    });
    await silent.close();
  }, { safetyMs: 500 });
});

Deno.test("Over Upstash the cron's sweep is one script call, whatever the partitions", async () => {
  await withDeployment(async (d) => {
    await delay(500);
    const before = d.proxy.commands;
    await sweepOnce(d.worker);
    assert.equal(d.proxy.commands - before, 1);
  }, { env: { JOB_PARTITIONS: "4" } });
});

Deno.test("Over Upstash a subscriber connection costs its log read and one feed read", async () => {
  await withDeployment(async (d) => {
    const id = await submit(d);
    await waitStatus(d, id, "succeeded", 3_000);
    await delay(300);
    const before = d.proxy.commands;
    const n = 20;
    for (let i = 0; i < n; i++) {
      const response = await d.api.app.request(`/v1/jobs/${id}/events`, {
        headers: bearer(d.token, { accept: "text/event-stream" }),
      });
      const text = await response.text(); // an ended job's stream replays its log and closes
      assert.match(text, /succeeded/);
    }
    const perConnection = (d.proxy.commands - before) / n;
    if (Deno.env.get("PUSH_DEBUG")) console.log({ perConnection });
    assert.ok(perConnection <= 2, `commands per connection: ${perConnection}`);
  });
});

Deno.test("Over Upstash a retry's due time publishes the wake-up that runs it again", async () => {
  await withDeployment(async (d) => {
    const id = await submit(d);
    // No safety poll within the hour: only the promotion's wake-up ends the idle claim loop's wait.
    await waitStatus(d, id, "succeeded", 3_000);
    assert.equal(d.provider.calls, 2);
  }, { fail: (call) => call === 1 ? new RetryableError("xAI answered 500") : undefined });
});

Deno.test("Over Upstash an idle dispatcher sends no command: a delivery added elsewhere, and its retry, wake it", async () => {
  // The first attempt answers 500: the retry the dispatcher scheduled is due about a second later.
  const receiver = startReceiver((n) =>
    new Response(n === 0 ? "busy" : "ok", { status: n === 0 ? 500 : 200 })
  );
  // The job's provider call is held: no job end nudges a dispatcher in its own process.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  try {
    await withDeployment(async (d) => {
      await delay(1_500); // start-up reads settle
      const before = d.proxy.commands;
      await delay(3_000);
      assert.equal(d.proxy.commands - before, 0, "two idle dispatchers wait for a wake-up");
      const response = await d.api.app.request("/v1/images", {
        method: "POST",
        headers: bearer(d.token),
        // The queued event: written by the API process, which runs no worker to nudge its dispatcher.
        body: JSON.stringify({
          prompt: "a lighthouse",
          webhook: receiver.url(),
          webhook_events: ["queued"],
        }),
      });
      assert.equal(response.status, 202);
      // Neither dispatcher polls within PUSHED_IDLE_MS: only the "w" wake-up sends the first attempt,
      // and only the retry's own due time the second.
      const first = await receiver.requests.next("the first attempt", 10_000);
      const second = await receiver.requests.next("the retry", 10_000);
      assert.equal(first.headers.get("webhook-id"), second.headers.get("webhook-id"));
      assert.equal(JSON.parse(second.body).type, "queued");
      open();
    }, { gate, env: { WEBHOOK_SECRET: SECRET, WEBHOOK_HOSTS: `127.0.0.1:${receiver.port}` } });
  } finally {
    open();
    await receiver.close();
  }
});

Deno.test("Over Upstash an idle Socket.IO bridge sends no command, and still emits each job's end", async () => {
  const server = await startSocketIoServer({ ack: true });
  try {
    await withDeployment(async (d) => {
      await server.waitForConnections(2);
      await delay(1_500); // start-up reads settle
      const before = d.proxy.commands;
      await delay(3_000);
      // Without push the bridges would look every lease / 4 = 1 s.
      assert.equal(d.proxy.commands - before, 0, "two idle bridges wait for a wake-up");
      const id = await submit(d);
      const [got] = await server.waitFor(1, 10_000);
      assert.equal((got.payload as { Id: string }).Id, id);
    }, { env: { NOTIFY_SOCKET_IO_URL: server.url, NOTIFY_SOCKET_IO_LEASE_MS: "4000" } });
  } finally {
    await server.close();
  }
});
