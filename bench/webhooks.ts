/**
 * Webhook delivery latency on loopback: a service subprocess (memory broker, then a real redis-server)
 * with the fake xAI runs N jobs that each ask for a webhook; a receiver on 127.0.0.1 records when each
 * delivery arrives. Reports p50/p90/p99/max of (arrival - the terminal event's `at`) and of
 * (arrival - submit). Run: `deno run --allow-all bench/webhooks.ts [jobs=200] [parallel=10]`.
 */
import { signToken, TEST_SECRET } from "../tests/support/app.ts";
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { SECRET } from "../tests/lib/webhooks/helpers.ts";
import { type LatencySummary, summarize } from "./stats.ts";

interface Result {
  broker: string;
  jobs: number;
  eventToDelivery: LatencySummary;
  submitToDelivery: LatencySummary;
  wallMs: number;
}

async function run(broker: "memory" | "redis", jobs: number, parallel: number): Promise<Result> {
  const redis = broker === "redis" ? await startRedis() : null;
  const xai = await startFakeXai();
  const submittedAt = new Map<string, number>();
  const eventLag: number[] = [];
  const submitLag: number[] = [];
  const { promise: allIn, resolve: allArrived } = Promise.withResolvers<void>();
  const receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const arrived = Date.now();
    const body = JSON.parse(await req.text()) as { id: string; at: string };
    eventLag.push(arrived - Date.parse(body.at));
    const sent = submittedAt.get(body.id);
    if (sent !== undefined) submitLag.push(arrived - sent);
    if (eventLag.length === jobs) allArrived();
    return new Response(null, { status: 204 });
  });
  const service = await startService({
    ...(redis ? { REDIS_URL: redis.url, REDIS_PREFIX: "bench-wh:" } : {}),
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-bench-key",
    GROK_MAX_RPS: "0",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_HOSTS: `127.0.0.1:${receiver.addr.port}`,
    RATE_LIMIT_PER_MINUTE: "0",
    MAX_ACTIVE_JOBS_PER_OWNER: "0",
    LOG_LEVEL: "warning",
  });
  const token = await signToken("bench");
  const webhook = `http://127.0.0.1:${receiver.addr.port}/hook`;
  const started = performance.now();
  try {
    let next = 0;
    const submitter = async () => {
      while (next < jobs) {
        const id = `bench-${next++}-${crypto.randomUUID()}`;
        submittedAt.set(id, Date.now());
        const res = await fetch(`${service.url}/v1/images`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ id, prompt: `a fox number ${next}`, webhook }),
        });
        if (res.status !== 202) {
          throw new Error(`submit answered ${res.status}: ${await res.text()}`);
        }
        await res.body?.cancel();
      }
    };
    await Promise.all(Array.from({ length: parallel }, submitter));
    const timeout = setTimeout(() => allArrived(), 120_000);
    await allIn;
    clearTimeout(timeout);
    return {
      broker,
      jobs: eventLag.length,
      eventToDelivery: summarize(eventLag),
      submitToDelivery: summarize(submitLag),
      wallMs: Math.round(performance.now() - started),
    };
  } finally {
    await service.stop("SIGTERM");
    await receiver.shutdown();
    await xai.close();
    await redis?.stop();
  }
}

if (import.meta.main) {
  const jobs = Number(Deno.args[0] ?? 200);
  const parallel = Number(Deno.args[1] ?? 10);
  for (const broker of ["memory", "redis"] as const) {
    const result = await run(broker, jobs, parallel);
    console.log(JSON.stringify(result));
  }
}
