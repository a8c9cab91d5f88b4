/** Chaos run: jobs over HTTP while workers are SIGKILLed, provider calls fail and Redis restarts once. */
import { z } from "zod";
import { signToken, TEST_SECRET } from "../tests/support/app.ts";
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { redisCommand, startRedis } from "../tests/support/redis_server.ts";
import { type ServiceProcess, startService } from "../tests/support/service.ts";

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
  lost: number;
  duplicated: number;
  workerKills: number;
  redisRestarts: number;
  providerCalls: number;
  /** Jobs another worker took over (more attempts than `started` events). */
  takenOver: number;
  /** Worst time from a taken-over job's last `started` event to its terminal event, or null. */
  worstTakeoverMs: number | null;
  /** From the end of submissions until every accepted job was terminal (or the wait gave up). */
  settleMs: number;
  durationMs: number;
  lostIds: string[];
  duplicatedIds: string[];
}

const PREFIX = "chaos:";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const IN_FLIGHT = 32;
const SUBJECTS = ["chaos-a", "chaos-b", "chaos-c", "chaos-d"];
const ENV = {
  REDIS_PREFIX: PREFIX,
  JWT_SECRET: TEST_SECRET,
  XAI_API_KEY: "k",
  JOB_LEASE_MS: "2000",
  JOB_MAX_ATTEMPTS: "12",
  JOB_BACKOFF_BASE_MS: "50",
  JOB_BACKOFF_MAX_MS: "500",
  WORKER_CONCURRENCY: "16",
  RATE_LIMIT_PER_MINUTE: "0",
  LOG_LEVEL: "warning",
};

const STATUSES = `local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGET', k, 'status') or '' end
return out`;

const DETAILS = `local out = {}
for i, k in ipairs(KEYS) do
  local f = redis.call('HMGET', k, 'status', 'seq', 'attempts')
  local row = {f[1] or '', f[3] or '0'}
  for s = 1, tonumber(f[2] or '0') or 0 do row[#row + 1] = redis.call('HGET', k, 'e' .. s) or '' end
  out[i] = row
end
return out`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function evalOver(port: number, script: string, ids: string[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (let i = 0; i < ids.length; i += 250) {
    const keys = ids.slice(i, i + 250).map((id) => `${PREFIX}job:${id}`);
    out.push(...await redisCommand(port, ["EVAL", script, String(keys.length), ...keys]) as []);
  }
  return out;
}

/** Reads the feed: for each job, the seqs of the terminal events it points at. */
async function feedTerminals(port: number): Promise<Map<string, Set<string>>> {
  const seqs = new Map<string, Set<string>>();
  for (let from = "-";;) {
    const range = ["XRANGE", `${PREFIX}events`, from, "+", "COUNT", "1000"];
    const entries = await redisCommand(port, range) as [string, string[]][];
    for (const [, fields] of entries) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
      if (!TERMINAL.has(JSON.parse(f.n ?? "{}").type)) continue;
      seqs.set(f.j, (seqs.get(f.j) ?? new Set()).add(f.e));
    }
    if (entries.length < 1000) return seqs;
    from = `(${entries.at(-1)![0]}`;
  }
}

type Verdict = Pick<
  ChaosReport,
  "succeeded" | "failed" | "takenOver" | "worstTakeoverMs" | "lostIds" | "duplicatedIds"
>;

/** Checks every accepted job: exactly one terminal event, agreeing with its status and the feed. */
async function judge(port: number, ids: string[]): Promise<Verdict> {
  const rows = await evalOver(port, DETAILS, ids) as string[][];
  const feed = await feedTerminals(port);
  const lostIds: string[] = [];
  const duplicatedIds: string[] = [];
  const v: Verdict = {
    succeeded: 0,
    failed: 0,
    takenOver: 0,
    worstTakeoverMs: null,
    lostIds,
    duplicatedIds,
  };
  rows.forEach(([status, attempts, ...raw], i) => {
    const events = raw.map((json) => JSON.parse(json || "{}") as { type?: string; at?: string });
    const terminals = events.filter((e) => TERMINAL.has(e.type ?? ""));
    if (status === "succeeded") v.succeeded++;
    if (status === "failed") v.failed++;
    if (!status || terminals.length === 0) lostIds.push(ids[i]);
    else if (terminals.length > 1 || terminals[0].type !== status) duplicatedIds.push(ids[i]);
    else if ((feed.get(ids[i])?.size ?? 0) > 1) duplicatedIds.push(ids[i]);
    const starts = events.filter((e) => e.type === "started");
    if (Number(attempts) > starts.length && starts.length > 0 && terminals.length > 0) {
      v.takenOver++;
      const ms = Date.parse(terminals[0].at!) - Date.parse(starts.at(-1)!.at!);
      v.worstTakeoverMs = Math.max(v.worstTakeoverMs ?? 0, ms);
    }
  });
  return v;
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
            body: JSON.stringify({ prompt: `chaos prompt ${n}`, id }),
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
        await sleep(loadStart + Math.floor(n / burst) * killEveryMs - performance.now());
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
      const statuses = await evalOver(redis.port, STATUSES, accepted) as string[];
      const open = statuses.filter((s) => !TERMINAL.has(s)).length;
      if (open === 0) break;
      log(`${open} jobs not ended yet`);
      await sleep(1_000);
    }
    const settleMs = performance.now() - loadEnd;
    const verdict = await judge(redis.port, accepted);
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
    ["duplicated", r.duplicated],
    ["worker kills", r.workerKills],
    ["redis restarts", r.redisRestarts],
    ["provider calls", r.providerCalls],
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
