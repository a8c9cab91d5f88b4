/**
 * The end-to-end load driver, run as its own process (`deno run -A bench/driver.ts '<json>'`): submits
 * jobs open-loop at a rate or closed-loop with a fixed number in flight, follows each job to its terminal
 * notification, and prints one JSON line of stats on stdout. `mode: "fanout"` runs bench/driver_fanout.ts.
 */
import {
  type ClientOptions,
  type JobClient,
  socketIoClient,
  sseClient,
  wsClient,
} from "./driver_clients.ts";
import { runFanout } from "./driver_fanout.ts";
import { cpuUsage } from "node:process";
import { type LatencySummary, sleep, summarize } from "./stats.ts";

/** Settings of one end-to-end run. */
export interface E2eConfig extends ClientOptions {
  mode: "e2e";
  transport: "sse" | "ws" | "socketio";
  /** Open loop: jobs per second, scheduled at fixed intervals whatever the completions. */
  rate?: number;
  /** Closed loop: jobs kept in flight (used when `rate` is absent). */
  inFlight?: number;
  durationMs: number;
  /** Closed loop: the first jobs are started evenly over this long, so that they do not move in waves. */
  rampMs?: number;
  /** Closed loop: completions before this are left out of the rate (warm-up). */
  warmupMs?: number;
  /** How long to wait for the last jobs after the submissions end. */
  drainMs: number;
}

/** What one end-to-end run measured. */
export interface E2eStats {
  submitted: number;
  succeeded: number;
  failed: number;
  errors: number;
  unfinished: number;
  /** Open loop: the rate actually offered. */
  offeredPerSec: number | null;
  /** Terminal events per second (open loop: over the wall time; closed loop: inside the window). */
  jobsPerSec: number;
  wallMs: number;
  latencyMs: LatencySummary;
  /** This driver's own CPU use, in percent of one core (to tell when the load generator saturates). */
  driverCpuPercent: number;
  firstErrors: string[];
}

function makeClient(config: E2eConfig): Promise<JobClient> | JobClient {
  if (config.transport === "ws") return wsClient(config);
  if (config.transport === "socketio") return socketIoClient(config);
  return sseClient(config);
}

/** Runs one end-to-end load and returns its stats. */
export async function runE2e(config: E2eConfig): Promise<E2eStats> {
  const client = await makeClient(config);
  const latencies: number[] = [];
  const doneAt: number[] = [];
  const firstErrors = new Set<string>();
  const pending = new Set<Promise<void>>();
  let submitted = 0, succeeded = 0, failed = 0, errors = 0;
  let stopped = false;
  const cpuBefore = cpuUsage();
  const start = performance.now();
  let last = start;

  const launch = () => {
    submitted++;
    const t0 = performance.now();
    const job: Promise<void> = client.run().then((type) => {
      last = performance.now();
      if (type === "succeeded") succeeded++;
      else failed++;
      latencies.push(last - t0);
      doneAt.push(last - start);
    }, (error) => {
      errors++;
      if (firstErrors.size < 5) firstErrors.add(String(error));
    }).finally(() => {
      pending.delete(job);
      if (config.rate === undefined && !stopped) launch();
    });
    pending.add(job);
  };

  let submitMs = config.durationMs;
  if (config.rate !== undefined) {
    const total = Math.max(1, Math.round((config.rate * config.durationMs) / 1000));
    while (submitted < total) {
      const due = Math.floor(((performance.now() - start) * config.rate) / 1000) + 1;
      while (submitted < Math.min(due, total)) launch();
      await sleep(1);
    }
    submitMs = performance.now() - start;
  } else {
    const inFlight = config.inFlight ?? 64;
    const ramp = config.rampMs ?? 0;
    for (let i = 0; i < inFlight; i++) {
      if (ramp > 0) await sleep(start + (i * ramp) / inFlight - performance.now());
      launch();
    }
    await sleep(start + config.durationMs - performance.now());
    stopped = true;
  }
  await Promise.race([Promise.allSettled([...pending]), sleep(config.drainMs)]);
  client.close();
  const cpu = cpuUsage(cpuBefore);
  const driverCpuPercent = Math.round((cpu.user + cpu.system) / 10 / (performance.now() - start));

  let jobsPerSec: number;
  if (config.rate !== undefined) {
    jobsPerSec = ((succeeded + failed) * 1000) / Math.max(1, last - start);
  } else {
    const from = config.warmupMs ?? 0;
    const inWindow = doneAt.filter((t) => t >= from && t < config.durationMs).length;
    jobsPerSec = (inWindow * 1000) / (config.durationMs - from);
  }
  return {
    submitted,
    succeeded,
    failed,
    errors,
    unfinished: pending.size,
    offeredPerSec: config.rate === undefined ? null : Math.round((submitted * 1000) / submitMs),
    jobsPerSec: Math.round(jobsPerSec * 10) / 10,
    wallMs: Math.round(last - start),
    latencyMs: summarize(latencies),
    driverCpuPercent,
    firstErrors: [...firstErrors],
  };
}

if (import.meta.main) {
  const config = JSON.parse(Deno.args[0]);
  if (config.mode === "fanout") await runFanout(config);
  else console.log(JSON.stringify(await runE2e(config)));
  Deno.exit(0);
}
