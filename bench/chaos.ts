/** Chaos run: jobs over HTTP while workers are SIGKILLed, provider calls fail and Redis restarts once. */
import { z } from "zod";
import { signToken, TEST_SECRET } from "../tests/support/app.ts";
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { type ServiceProcess, startService } from "../tests/support/service.ts";
import { evalOver, judge, STATUSES } from "./chaos_judge.ts";

/** Settings of one chaos run (defaults: 3 workers, a kill every 3000 ms, 20% provider 500s). */
export interface ChaosOptions {
  jobs: number;
  workers?: number;
  killEveryMs?: number;
  failRate?: number;
  log?: (line: string) => void;
  /** Length of the submission phase, one burst per kill period (default max(4 periods, 10 ms a job)). */
  loadMs?: number;
  /** How long to wait for every accepted job to end after submissions (default 180000). */
  settleMs?: number;
}

/** What a chaos run observed; times in ms. */
export interface ChaosReport {
  submitted: number;
  accepted: number;
  /** Submissions answered 5xx or 429 or cut off, each retried with the same id. */
  submitRetries: number;
  succeeded: number;
  failed: number;
  /** Accepted jobs with no terminal event. */
  lost: number;
  /** Jobs with more than one terminal event (or one that disagrees with the status or the feed). */
  duplicated: number;
  workerKills: number;
  redisRestarts: number;
  providerCalls: number;
  /** Provider calls beyond the recorded attempts of their job, summed over all jobs. */
  duplicatedCalls: number;
  /** Provider requests whose worker went away (killed, or aborted on a lost lease) before the answer. */
  providerAborted: number;
  /** Jobs another worker took over (more attempts than `started` events). */
  takenOver: number;
  /** Worst time from a taken-over job's last `started` event to its terminal event, or null. */
  worstTakeoverMs: number | null;
  /** From the end of submissions until every accepted job was terminal (or the wait gave up). */
  settleMs: number;
  durationMs: number;
  lostIds: string[];
  duplicatedIds: string[];
  /** Jobs with more provider calls than recorded attempts. */
  duplicatedCallIds: string[];
}

const PREFIX = "chaos:";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const IN_FLIGHT = 32;
const SUBJECTS = ["chaos-a", "chaos-b", "chaos-c", "chaos-d"];
const ENV = {
  REDIS_PREFIX: PREFIX,
  JWT_SECRET: TEST_SECRET,
  XAI_API_KEY: "k",
  // The faults here are kills and 500s, not the provider's pace: unpaced unless it answers 429.
  GROK_MAX_RPS: "0",
  JOB_LEASE_MS: "2000",
  JOB_MAX_ATTEMPTS: "12",
  JOB_BACKOFF_BASE_MS: "50",
  JOB_BACKOFF_MAX_MS: "500",
  WORKER_CONCURRENCY: "16",
  RATE_LIMIT_PER_MINUTE: "0",
  LOG_LEVEL: "warning",
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Each job's prompt is unique, so that the fake provider's calls can be counted per job. */
function promptOf(id: string): string {
  return `chaos prompt ${id}`;
}

/** Starts Redis, a fake xAI, one API and `workers` worker processes, submits jobs under faults, judges. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { jobs, workers = 3, killEveryMs = 3_000, failRate = 0.2 } = options;
  const loadMs = options.loadMs ?? Math.max(4 * killEveryMs, jobs * 10);
  const began = performance.now();
  const log = (line: string) =>
    options.log?.(`[${((performance.now() - began) / 1000).toFixed(1)} s] ${line}`);
  const redis = await startRedis({ appendonly: true });
  const fake = await startFakeXai({ latencyMs: 30, failRate });
  const env = { ...ENV, REDIS_URL: redis.url, GROK_API: fake.url, IMAGE_HOSTS: fake.host };
  const live: ServiceProcess[] = [];
  const starting = new Set<Promise<unknown>>();
  const faults: Promise<void>[] = [];
  let api: ServiceProcess | undefined;
  const addWorker = () => {
    const started = startService({ ...env, ROLE: "worker" })
      .then((worker) => void live.push(worker))
      .catch((error) => log(`cannot start a worker: ${error}`))
      .finally(() => starting.delete(started));
    starting.add(started);
    return started;
  };
  try {
    const apiStart = startService({ ...env, ROLE: "api" }).then((p) => (api = p));
    await Promise.all([apiStart, ...Array.from({ length: workers }, addWorker)]);
    log(`redis on ${redis.port}, api ${api!.url}, ${live.length} workers`);
    const tokens = await Promise.all(SUBJECTS.map((sub) => signToken(sub)));
    const accepted: string[] = [];
    let workerKills = 0, redisRestarts = 0, submitRetries = 0;
    const killWorker = async () => {
      if (live.length === 0) return;
      const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0];
      await victim.stop("SIGKILL");
      workerKills++;
      log(`SIGKILLed worker ${victim.pid}; starting a replacement`);
      await addWorker();
    };
    const restartRedis = async () => {
      log("SIGKILL redis-server");
      await redis.kill();
      await sleep(1_000);
      await redis.restart();
      redisRestarts++;
      log("redis-server restarted");
    };
    const submitOne = async (n: number) => {
      const id = `chaos-${n}`;
      const headers = { Authorization: `Bearer ${tokens[n % tokens.length]}` };
      for (let tries = 1;; tries++) {
        try {
          const res = await fetch(`${api!.url}/v1/images`, {
            method: "POST",
            headers: { ...headers, "Content-Type": "application/json" },
            body: JSON.stringify({ prompt: promptOf(id), id }),
            signal: AbortSignal.timeout(10_000),
          });
          await res.body?.cancel();
          if (res.status === 202 || res.status === 200) return void accepted.push(id);
          if (res.status < 500 && res.status !== 429) return log(`${id} refused: ${res.status}`);
        } catch {
          // A network error or timeout: retry with the same id.
        }
        if (tries >= 300) return log(`${id} never accepted`);
        submitRetries++;
        await sleep(100 + Math.random() * 200);
      }
    };
    // One burst of jobs per kill period; a worker is killed halfway through each burst, while it
    // holds jobs, and Redis halfway through all submissions.
    const loadStart = performance.now();
    const burst = Math.ceil(jobs / Math.max(1, Math.round(loadMs / killEveryMs)));
    let next = 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < jobs) {
        const n = next++;
        await sleep(
          Math.max(0, loadStart + Math.floor(n / burst) * killEveryMs - performance.now()),
        );
        if (n % burst === Math.floor(burst / 2)) faults.push(killWorker());
        if (n === Math.floor(jobs / 2)) faults.push(restartRedis());
        await submitOne(n);
      }
    }));
    await Promise.all(faults);
    await Promise.allSettled([...starting]);
    if (live.length === 0) await addWorker();
    const loadEnd = performance.now();
    log(`${accepted.length} of ${jobs} accepted; waiting for every job to end`);
    const deadline = Date.now() + (options.settleMs ?? 180_000);
    while (Date.now() < deadline) {
      const statuses = await evalOver(redis.port, PREFIX, STATUSES, accepted) as string[];
      const open = statuses.filter((s) => !TERMINAL.has(s)).length;
      if (open === 0) break;
      log(`${open} jobs not ended yet`);
      await sleep(1_000);
    }
    const settleMs = performance.now() - loadEnd;
    const callsOf = (id: string) => fake.callsByPrompt.get(promptOf(id)) ?? 0;
    const verdict = await judge(redis.port, PREFIX, accepted, callsOf);
    return {
      submitted: jobs,
      accepted: accepted.length,
      submitRetries,
      ...verdict,
      lost: verdict.lostIds.length,
      duplicated: verdict.duplicatedIds.length,
      workerKills,
      redisRestarts,
      providerCalls: fake.calls,
      providerAborted: fake.aborted,
      settleMs,
      durationMs: performance.now() - began,
    };
  } finally {
    await Promise.allSettled(faults);
    await Promise.allSettled([...starting]);
    await Promise.allSettled([api, ...live].map((p) => p?.stop("SIGTERM")));
    await fake.close();
    await redis.stop();
  }
}

/** Formats a report as a small Markdown table. */
export function formatReport(r: ChaosReport): string {
  const s = (ms: number | null) => ms === null ? "n/a" : `${(ms / 1000).toFixed(2)} s`;
  const rows: [string, string | number][] = [
    ["submitted", r.submitted],
    ["accepted", r.accepted],
    ["submissions retried (5xx, 429 or network error)", r.submitRetries],
    ["succeeded", r.succeeded],
    ["failed", r.failed],
    ["lost", r.lost],
    ["duplicated terminal events", r.duplicated],
    ["worker kills", r.workerKills],
    ["redis restarts", r.redisRestarts],
    ["provider calls", r.providerCalls],
    ["duplicated provider calls (beyond the job's attempts)", r.duplicatedCalls],
    ["jobs with duplicated provider calls", r.duplicatedCallIds.length],
    ["provider calls aborted by their worker", r.providerAborted],
    ["jobs taken over", r.takenOver],
    ["worst takeover delay (last started → terminal)", s(r.worstTakeoverMs)],
    ["settle time after submissions", s(r.settleMs)],
    ["duration", s(r.durationMs)],
  ];
  const lines = [
    "| metric | value |",
    "| --- | ---: |",
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
  ];
  if (r.lostIds.length) lines.push("", `lost: ${r.lostIds.slice(0, 20).join(", ")}`);
  if (r.duplicatedIds.length) {
    lines.push("", `duplicated: ${r.duplicatedIds.slice(0, 20).join(", ")}`);
  }
  if (r.duplicatedCallIds.length) {
    lines.push("", `duplicated provider calls: ${r.duplicatedCallIds.slice(0, 20).join(", ")}`);
  }
  return lines.join("\n");
}

const jobsArg = z.coerce.number().int().min(1).max(1_000_000);

if (import.meta.main) {
  const at = Deno.args.indexOf("--jobs");
  const jobs = Deno.args.includes("--quick")
    ? 300
    : jobsArg.parse(at >= 0 ? Deno.args[at + 1] : 2000);
  const report = await runChaos({ jobs, log: (line) => console.error(line) });
  console.log(`## Chaos run: ${jobs} jobs\n\n${formatReport(report)}`);
  Deno.exit(report.lost > 0 || report.duplicated > 0 ? 1 : 0);
}
