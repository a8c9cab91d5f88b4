/** Scenarios 3, 6 (TCP part), 7 and 8: end to end with an instant provider, scale-out and the Node peer. */
import { TEST_SECRET } from "../tests/support/app.ts";
import { startFakeXai } from "../tests/support/fake_xai.ts";
import type { E2eStats } from "./driver.ts";
import {
  drive,
  ensurePeerDeps,
  MAX_IN_FLIGHT,
  maxLoad,
  serviceEnv,
  startPeer,
  startServices,
} from "./processes.ts";
import { type Bench, ofLimits, type Row } from "./report.ts";
import { countCommands, redisCostScenario } from "./scenarios_redis.ts";

const CONCURRENCY = "64";

/** Our figures the later scenarios compare with: maxima over SSE and WebSockets, and SSE at 500/s. */
export interface OurResults {
  max: E2eStats;
  ws: E2eStats;
  at500: E2eStats;
}

function latencyRows(scenario: string, label: string, s: E2eStats): Row[] {
  return [
    { scenario, figure: `${label}: p50`, value: s.latencyMs.p50, unit: "ms" },
    { scenario, figure: `${label}: p99`, value: s.latencyMs.p99, unit: "ms" },
  ];
}

/** Scenario 3 (and 6 on the same service): one process, instant provider, SSE per job. */
export async function e2eScenario(bench: Bench): Promise<OurResults> {
  const xai = await startFakeXai();
  const services = await startServices([
    serviceEnv(bench.redis, xai, { REDIS_PREFIX: "bench-e2e:", WORKER_CONCURRENCY: CONCURRENCY }),
  ]);
  const [service] = services.procs;
  const pids = { service: service.pid, redis: bench.redis.pid };
  const scenario = "3. End to end, instant";
  const duration = bench.quick ? 1_000 : 6_000;
  try {
    await drive(bench, service.url, { transport: "sse", rate: 300, durationMs: 1_000 }, pids);
    const points: Record<string, E2eStats> = {};
    for (const rate of [100, 500, 1000]) {
      const s = await drive(
        bench,
        service.url,
        { transport: "sse", rate, durationMs: duration },
        pids,
      );
      points[`rate${rate}`] = s;
      bench.rows.push({
        scenario,
        figure: `offered ${rate}/s: completed jobs/s`,
        value: s.jobsPerSec,
        unit: "jobs/s",
        ratio: ofLimits(s.jobsPerSec, bench.limits, true),
      }, ...latencyRows(scenario, `offered ${rate}/s`, s));
      if (rate === 500) {
        const row = bench.rows.at(-1)!;
        row.target = "≤ 50 ms";
        row.pass = s.latencyMs.p99 !== null && s.latencyMs.p99 <= 50 && s.errors === 0;
      }
    }
    const counted = await countCommands(
      bench.redis.port,
      () => drive(bench, service.url, maxLoad(bench, "sse"), pids),
    );
    const max = counted.result;
    points.max = max;
    const jobs = max.succeeded + max.failed;
    bench.rows.push({
      scenario,
      figure: `maximum (${MAX_IN_FLIGHT} in flight): jobs/s`,
      value: max.jobsPerSec,
      unit: "jobs/s",
      target: "≥ 1,500 jobs/s",
      ratio: ofLimits(max.jobsPerSec, bench.limits, true),
      pass: max.jobsPerSec >= 1500,
    }, ...latencyRows(scenario, "maximum", max));
    const ws = await drive(bench, service.url, maxLoad(bench, "ws"), pids);
    points.maxWebSocket = ws;
    bench.rows.push({
      scenario,
      figure: "maximum over 8 shared WebSockets: jobs/s",
      value: ws.jobsPerSec,
      unit: "jobs/s",
      ratio: ofLimits(ws.jobsPerSec, bench.limits, true),
    }, ...latencyRows(scenario, "maximum, WebSockets", ws));
    bench.raw.e2e = points;
    await redisCostScenario(bench, service.url, pids);
    bench.raw.redisCostAtMax = { jobs, calls: counted.calls };
    bench.rows.push({
      scenario: "6. Redis cost",
      figure: "TCP: commands per job at the maximum, incl. script internals",
      value: counted.commands / jobs,
      unit: "",
      ratio: `at ${Math.round(max.jobsPerSec)} jobs/s`,
    });
    return { max, ws, at500: points.rate500 };
  } finally {
    await services.stop();
    await xai.close();
  }
}

/** Scenario 7: one API process and two worker processes against the single process of scenario 3. */
export async function scaleOutScenario(bench: Bench, single: E2eStats): Promise<void> {
  const xai = await startFakeXai();
  const base = { REDIS_PREFIX: "bench-scale:", WORKER_CONCURRENCY: CONCURRENCY };
  const services = await startServices([
    serviceEnv(bench.redis, xai, { ...base, ROLE: "api" }),
    serviceEnv(bench.redis, xai, { ...base, ROLE: "worker" }),
    serviceEnv(bench.redis, xai, { ...base, ROLE: "worker" }),
  ]);
  const [api, w1, w2] = services.procs;
  try {
    const pids = { api: api.pid, worker1: w1.pid, worker2: w2.pid, redis: bench.redis.pid };
    await drive(bench, api.url, { transport: "sse", rate: 300, durationMs: 1_000 }, pids);
    const s = await drive(bench, api.url, maxLoad(bench, "sse"), pids);
    bench.raw.scaleOut = { split: s, single };
    const scenario = "7. Scale-out";
    bench.rows.push(
      {
        scenario,
        figure: "1 API + 2 workers: jobs/s",
        value: s.jobsPerSec,
        unit: "jobs/s",
        ratio: ofLimits(s.jobsPerSec, bench.limits, true),
      },
      ...latencyRows(scenario, "1 API + 2 workers", s),
      {
        scenario,
        figure: "throughput ratio to one process",
        value: s.jobsPerSec / single.jobsPerSec,
        unit: "×",
      },
    );
  } finally {
    await services.stop();
    await xai.close();
  }
}

/** Scenario 8: the same load against Express + BullMQ + socket.io on Node, in the same run. */
export async function peerScenario(
  bench: Bench,
  ours: OurResults,
): Promise<void> {
  await ensurePeerDeps();
  const xai = await startFakeXai();
  const peer = await startPeer({
    REDIS_URL: bench.redis.url,
    JWT_SECRET: TEST_SECRET,
    GROK_API: xai.url,
    XAI_API_KEY: "k",
    GROK_MAX_RPS: "0", // measures the service, not the provider's pace
    WORKER_CONCURRENCY: CONCURRENCY,
    BULL_PREFIX: "bench-peer",
  });
  const pids = { peer: peer.pid, redis: bench.redis.pid };
  try {
    const duration = bench.quick ? 1_000 : 6_000;
    await drive(bench, peer.url, { transport: "socketio", rate: 300, durationMs: 1_000 }, pids);
    const at500 = await drive(bench, peer.url, {
      transport: "socketio",
      rate: 500,
      durationMs: duration,
    }, pids);
    const max = await drive(bench, peer.url, maxLoad(bench, "socketio"), pids);
    bench.raw.peer = { at500, max, ours };
    const scenario = "8. Peer (BullMQ + socket.io)";
    const times = (a: number | null, b: number | null) =>
      a === null || b === null || b === 0 ? null : a / b;
    const wsRatio = times(ours.ws.jobsPerSec, max.jobsPerSec);
    bench.rows.push(
      {
        scenario,
        figure: "peer maximum: jobs/s",
        value: max.jobsPerSec,
        unit: "jobs/s",
        ratio: ofLimits(max.jobsPerSec, bench.limits, true),
      },
      ...latencyRows(scenario, "peer maximum", max),
      ...latencyRows(scenario, "peer offered 500/s", at500),
      {
        scenario,
        figure: "our throughput ÷ peer's (WebSockets)",
        value: wsRatio,
        unit: "×",
        target: "≥ 3×",
        pass: wsRatio !== null && wsRatio >= 3,
      },
      {
        scenario,
        figure: "our throughput ÷ peer's (SSE per job)",
        value: times(ours.max.jobsPerSec, max.jobsPerSec),
        unit: "×",
      },
      {
        scenario,
        figure: "our p99 ÷ peer's at maximum (WebSockets)",
        value: times(ours.ws.latencyMs.p99, max.latencyMs.p99),
        unit: "×",
      },
      {
        scenario,
        figure: "our p99 ÷ peer's at 500/s offered (ours over SSE)",
        value: times(ours.at500.latencyMs.p99, at500.latencyMs.p99),
        unit: "×",
      },
    );
  } finally {
    await peer.stop();
    await xai.close();
  }
}
