/** Scenarios 1 and 2: the machine's limits, and `POST /v1/images` under wrk. */
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { runWrk, startHello, submitScriptOpsPerSec, xaddOpsPerSec } from "./load.ts";
import { serviceEnv, startServices } from "./processes.ts";
import { type Bench, type Limits, ofHelloLatency, ofLimits } from "./report.ts";
import { withCpu } from "./stats.ts";

const CONNECTIONS = 64;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Scenario 1: bare Deno.serve with wrk (64 connections, one thread) and redis-benchmark XADD. */
export async function measureLimits(bench: Pick<Bench, "quick" | "redis" | "log">): Promise<{
  limits: Limits;
  raw: Record<string, unknown>;
}> {
  const port = freePort();
  const hello = await startHello(port);
  const url = `http://127.0.0.1:${port}/`;
  let wrk;
  try {
    await runWrk(url, { connections: CONNECTIONS, durationSec: 1 });
    wrk = await withCpu(
      { server: hello.pid },
      () => runWrk(url, { connections: CONNECTIONS, durationSec: bench.quick ? 2 : 5 }),
    );
  } finally {
    await hello.stop();
  }
  const xaddOps = await xaddOpsPerSec(bench.redis.port, bench.quick ? 50_000 : 300_000);
  const submitScriptOps = await submitScriptOpsPerSec(
    bench.redis.port,
    bench.quick ? 30_000 : 200_000,
  );
  const limits: Limits = {
    helloRps: wrk.result.requestsPerSec,
    helloP50Ms: wrk.result.p50Ms,
    helloP99Ms: wrk.result.p99Ms,
    xaddOps,
    submitScriptOps,
  };
  bench.log(`limits: ${JSON.stringify(limits)}`);
  return { limits, raw: { hello: wrk, xaddOps, submitScriptOps } };
}

/** Adds scenario 1's rows. */
export function limitRows(bench: Bench): void {
  const { limits } = bench;
  const scenario = "1. Limits";
  bench.rows.push(
    {
      scenario,
      figure: "Deno.serve hello world (wrk, 64 conns)",
      value: limits.helloRps,
      unit: "req/s",
    },
    { scenario, figure: "Deno.serve p50", value: limits.helloP50Ms, unit: "ms" },
    { scenario, figure: "Deno.serve p99", value: limits.helloP99Ms, unit: "ms" },
    { scenario, figure: "redis-benchmark XADD (50 clients)", value: limits.xaddOps, unit: "ops/s" },
    {
      scenario,
      figure: "redis-benchmark EVALSHA of the submit script (50 clients)",
      value: limits.submitScriptOps,
      unit: "ops/s",
      ratio: `${(100 * limits.submitScriptOps / limits.helloRps).toFixed(0)}% of Deno.serve`,
    },
  );
}

/** Scenario 2: `POST /v1/images` with HS256 JWTs of 64 owners at 64 connections (ROLE=api). */
export async function submitScenario(bench: Bench): Promise<void> {
  const xai = await startFakeXai();
  // ROLE=api: submissions only, so no worker competes for the CPU; jobs pile up in the stream.
  const services = await startServices([
    serviceEnv(bench.redis, xai, { REDIS_PREFIX: "bench-submit:", ROLE: "api" }),
  ]);
  const [service] = services.procs;
  const url = `${service.url}/v1/images`;
  const post = { path: "/v1/images", body: '{"prompt":"a red fox in snow"}', tokens: bench.tokens };
  try {
    await runWrk(url, { connections: CONNECTIONS, durationSec: 1, post });
    const { result, cpu } = await withCpu(
      { service: service.pid, redis: bench.redis.pid },
      () => runWrk(url, { connections: CONNECTIONS, durationSec: bench.quick ? 2 : 8, post }),
    );
    bench.raw.submit = { ...result, cpuPercent: cpu };
    const scenario = "2. Submit";
    const target = 0.35 * bench.limits.helloRps;
    bench.rows.push(
      {
        scenario,
        figure: "POST /v1/images, 64 conns",
        value: result.requestsPerSec,
        unit: "req/s",
        target: "≥ 35% of Deno.serve",
        ratio: ofLimits(result.requestsPerSec, bench.limits, true),
        pass: result.requestsPerSec >= target && result.errors === 0,
      },
      {
        scenario,
        figure: "p50",
        value: result.p50Ms,
        unit: "ms",
        ratio: ofHelloLatency(result.p50Ms, bench.limits, 50),
      },
      {
        scenario,
        figure: "p99",
        value: result.p99Ms,
        unit: "ms",
        ratio: ofHelloLatency(result.p99Ms, bench.limits, 99),
      },
      { scenario, figure: "errors (non-2xx, socket)", value: result.errors, unit: "" },
      {
        scenario,
        figure: "share of Redis's own ceiling for the submit script",
        value: (100 * result.requestsPerSec) / bench.limits.submitScriptOps,
        unit: "%",
        ratio:
          "Redis alone, with a C client and a core to itself, runs the script at the figure above",
      },
    );
  } finally {
    await services.stop();
    await xai.close();
  }
}
