/** Scenarios 4 and 5: a slow provider at several worker concurrencies, and SSE fan-out to many subscribers. */
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { drive, serviceEnv, startFanoutDriver, startServices } from "./processes.ts";
import { startHello } from "./load.ts";
import { countCommands } from "./scenarios_redis.ts";
import { type Bench, ofLimits } from "./report.ts";
import { median, rssKib, sampleRss, sleep, summarize } from "./stats.ts";

/**
 * Runs a closed loop of `inFlight` jobs (started evenly over one latency) and returns the median RSS of
 * the service over its second half; `measure` runs long enough to count 4 latencies of completions.
 */
async function busyRss(
  bench: Bench,
  service: { url: string; pid: number },
  { inFlight, latencyMs, measure }: { inFlight: number; latencyMs: number; measure: boolean },
) {
  const sampler = sampleRss(service.pid, 100);
  const stats = await drive(bench, service.url, {
    transport: "sse",
    inFlight,
    rampMs: latencyMs,
    durationMs: latencyMs * (measure ? 5.5 : 2),
    warmupMs: latencyMs * 1.5,
  }, { service: service.pid });
  const samples = sampler.stop();
  return { stats, kib: median(samples.slice(Math.floor(samples.length / 2))) ?? 0 };
}

/** Scenario 4: provider latency 2 s (0.3 s quick); closed loop with `concurrency` jobs in flight. */
export async function slowScenario(bench: Bench): Promise<void> {
  const latencyMs = bench.quick ? 300 : 2_000;
  const xai = await startFakeXai({ latencyMs });
  const scenario = `4. Slow provider (${latencyMs / 1000} s)`;
  const raw: Record<string, unknown> = {};
  try {
    for (const concurrency of [8, 64, 256]) {
      const services = await startServices([serviceEnv(bench.redis, xai, {
        REDIS_PREFIX: `bench-slow-${concurrency}:`,
        WORKER_CONCURRENCY: String(concurrency),
      })]);
      const [service] = services.procs;
      try {
        // Memory per in-flight job is a slope: RSS at a quarter of the concurrency (which also warms the
        // process up), then at full concurrency; RSS only grows, so the difference is what the extra jobs took.
        const base = Math.max(2, Math.floor(concurrency / 4));
        const { kib: baseKib } = await busyRss(bench, service, {
          inFlight: base,
          latencyMs,
          measure: false,
        });
        const { stats: s, kib: busyKib } = await busyRss(bench, service, {
          inFlight: concurrency,
          latencyMs,
          measure: true,
        });
        const ideal = Math.round((concurrency * 1000) / latencyMs);
        const perJobKib = (busyKib - baseKib) / (concurrency - base);
        raw[`c${concurrency}`] = { ...s, base, baseKib, busyKib, perJobKib, ideal };
        bench.rows.push({
          scenario,
          figure: `WORKER_CONCURRENCY ${concurrency}: jobs/s (ideal ${ideal})`,
          value: s.jobsPerSec,
          unit: "jobs/s",
          target: "≥ 90% of ideal",
          ratio: `${Math.round((s.jobsPerSec / ideal) * 100)}% of ideal; ${
            ofLimits(s.jobsPerSec, bench.limits)
          }`,
          pass: s.jobsPerSec >= 0.9 * ideal,
        }, {
          scenario,
          figure:
            `WORKER_CONCURRENCY ${concurrency}: RSS per in-flight job (${base} → ${concurrency})`,
          value: perJobKib,
          unit: "KiB",
          ratio: `RSS ${Math.round(baseKib / 1024)} → ${Math.round(busyKib / 1024)} MiB`,
        });
      } finally {
        await services.stop();
      }
    }
  } finally {
    bench.raw.slow = raw;
    await xai.close();
  }
}

async function submitJobs(url: string, tokens: string[], count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `fanout-${i}`);
  await Promise.all(ids.map(async (id, i) => {
    const response = await fetch(`${url}/v1/images`, {
      method: "POST",
      headers: { Authorization: `Bearer ${tokens[i % tokens.length]}` },
      body: JSON.stringify({ prompt: "a red fox in snow", id }),
    });
    await response.body?.cancel();
    if (response.status !== 202) throw new Error(`Cannot submit ${id}: ${response.status}`);
  }));
  return ids;
}

/** What one fan-out phase measured. */
interface FanoutResult {
  subscribers: number;
  perSubscriberKib: number;
  perSec: number;
  latency: ReturnType<typeof summarize>;
  connectMs: number;
  succeededJobs: number;
  hgetallPerJob: number;
}

/**
 * One fan-out phase on fresh processes: J jobs × 100 subscribers on a ROLE=api process; then a
 * ROLE=worker process (concurrency 5, provider 1 s) runs them, so each job's `started` and `succeeded`
 * reach 100 subscribers: 5 jobs/s × 2 events × 100 = 1,000 deliveries/s.
 */
async function fanoutPhase(bench: Bench, transport: "sse" | "ws"): Promise<FanoutResult> {
  const jobs = bench.quick ? 10 : 100;
  const driverCount = bench.quick ? 1 : 4;
  const xai = await startFakeXai({ latencyMs: 1_000 });
  const env = { REDIS_PREFIX: `bench-fanout-${transport}:`, WORKER_CONCURRENCY: "5" };
  const api = await startServices([serviceEnv(bench.redis, xai, { ...env, ROLE: "api" })]);
  const [service] = api.procs;
  const drivers: ReturnType<typeof startFanoutDriver>[] = [];
  let worker: Awaited<ReturnType<typeof startServices>> | undefined;
  try {
    const ids = await submitJobs(service.url, bench.tokens, jobs);
    await sleep(300);
    const beforeKib = rssKib(service.pid) ?? 0;
    for (let d = 0; d < driverCount; d++) {
      const targets = ids.flatMap((jobId, i) =>
        i % driverCount === d
          ? [{ jobId, token: bench.tokens[i % bench.tokens.length], count: PER_JOB }]
          : []
      );
      drivers.push(
        startFanoutDriver({ url: service.url, transport, targets, connectConcurrency: 64 }),
      );
    }
    const connected = await Promise.all(drivers.map((d) => d.connected));
    const subscribers = connected.reduce((n, c) => n + c.connected, 0);
    await sleep(500);
    const afterKib = rssKib(service.pid) ?? 0;
    const counted = await countCommands(bench.redis.port, async () => {
      worker = await startServices([serviceEnv(bench.redis, xai, { ...env, ROLE: "worker" })]);
      await sleep(bench.quick ? 2_000 : 6_000);
      return await Promise.all(drivers.map((d) => d.finish()));
    });
    const done = counted.result;
    // Jobs that succeeded while measured, and the HGETALLs the relay made for them (one per subscriber?).
    const succeeded = done.reduce((n, d) => n + Number(d.succeeded ?? 0), 0) / PER_JOB;
    const hgetallPerJob = (counted.calls.hgetall ?? 0) / Math.max(1, succeeded);
    const latencies = done.flatMap((d) => d.samples as number[]);
    const first = Math.min(...done.map((d) => Number(d.firstAt)));
    const last = Math.max(...done.map((d) => Number(d.lastAt)));
    const result = {
      subscribers,
      perSubscriberKib: (afterKib - beforeKib) / Math.max(1, subscribers),
      perSec: (latencies.length * 1000) / Math.max(1, last - first),
      latency: summarize(latencies),
      connectMs: Math.max(...connected.map((c) => c.connectMs)),
      succeededJobs: succeeded,
      hgetallPerJob,
    };
    bench.log(`  ${transport}: ${JSON.stringify({ ...result, beforeKib, afterKib })}`);
    return result;
  } finally {
    for (const d of drivers) d.kill();
    await worker?.stop();
    await api.stop();
    await xai.close();
  }
}

const PER_JOB = 100;

/** The floor: RSS per open streaming response of a bare Deno.serve, with the same driver. */
async function floorPhase(bench: Bench): Promise<number> {
  const port = 8300 + Math.floor(Math.random() * 500);
  const hello = await startHello(port);
  const subscribers = bench.quick ? 1_000 : 10_000;
  try {
    await sleep(300);
    const beforeKib = rssKib(hello.pid) ?? 0;
    const driver = startFanoutDriver({
      url: `http://127.0.0.1:${port}`,
      transport: "sse",
      targets: [{ jobId: "floor", token: "none", count: subscribers }],
      connectConcurrency: 64,
    });
    const { connected } = await driver.connected;
    await sleep(500);
    const afterKib = rssKib(hello.pid) ?? 0;
    driver.kill();
    return (afterKib - beforeKib) / Math.max(1, connected);
  } finally {
    await hello.stop();
  }
}

/** Scenario 5: fan-out to 10,000 subscribers over SSE (the target) and over WebSockets (for comparison). */
export async function fanoutScenario(bench: Bench): Promise<void> {
  const scenario = "5. Fan-out";
  const floorKib = await floorPhase(bench);
  const sse = await fanoutPhase(bench, "sse");
  const ws = await fanoutPhase(bench, "ws");
  bench.raw.fanout = { sse, ws, floorKib };
  const jobs = sse.subscribers / PER_JOB;
  bench.rows.push(
    {
      scenario,
      figure: `SSE subscribers connected (${jobs} jobs × ${PER_JOB})`,
      value: sse.subscribers,
      unit: "",
      ratio: `in ${sse.connectMs} ms`,
    },
    {
      scenario,
      figure: "SSE: RSS per subscriber",
      value: sse.perSubscriberKib,
      unit: "KiB",
      target: "≤ 20 KiB",
      ratio: `floor ${floorKib.toFixed(1)} KiB (bare Deno.serve streaming response); ours +${
        (sse.perSubscriberKib - floorKib).toFixed(1)
      } KiB`,
      pass: sse.subscribers >= (bench.quick ? 1_000 : 10_000) && sse.perSubscriberKib <= 20,
    },
    { scenario, figure: "SSE: deliveries/s (started + succeeded)", value: sse.perSec, unit: "/s" },
    {
      scenario,
      figure: "SSE: delivery latency p99",
      value: sse.latency.p99,
      unit: "ms",
      target: "≤ 200 ms at ~1,000/s",
      ratio: `p50 ${sse.latency.p50} ms`,
      pass: sse.latency.p99 !== null && sse.latency.p99 <= 200,
    },
    {
      scenario,
      figure: "SSE: Redis HGETALL per succeeded job (100 subscribers)",
      value: sse.hgetallPerJob,
      unit: "",
      ratio: `over ${sse.succeededJobs} jobs`,
    },
    {
      scenario,
      figure: "WebSocket (one socket per subscriber): RSS per subscriber",
      value: ws.perSubscriberKib,
      unit: "KiB",
      ratio: `${ws.subscribers} connected`,
    },
    { scenario, figure: "WebSocket: deliveries/s", value: ws.perSec, unit: "/s" },
    {
      scenario,
      figure: "WebSocket: delivery latency p99",
      value: ws.latency.p99,
      unit: "ms",
      ratio: `p50 ${ws.latency.p50} ms`,
    },
  );
}
