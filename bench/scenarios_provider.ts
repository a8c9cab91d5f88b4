/**
 * Scenario 10: a provider-limited backlog. One heavy owner submits most jobs at once while light
 * owners submit one job every second or so; the fake xAI takes `limit` requests per second (a token
 * bucket, burst = limit, 429 + Retry-After beyond it) after `latencyMs`. Ours (two processes,
 * GROK_MAX_RPS = limit) and the seed's stack (server.js + Bull, no retries) run the same plan
 * against the same fake.
 */
import { io, type Socket } from "socket.io-client";
import { TEST_SECRET } from "../tests/support/app.ts";
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { serviceEnv, startServices } from "./processes.ts";
import type { Bench } from "./report.ts";
import {
  figures,
  type JobTrace,
  providerRows,
  providerTable,
  type Run,
  type Workload,
} from "./report_provider.ts";
import { ensureSeedRef, startSeedStack } from "./seed_ref.ts";
import { sleep } from "./stats.ts";

const SCENARIO = "10. Provider-limited";
const PROMPT = "a red fox in snow";
/** Our processes, and each one's WORKER_CONCURRENCY. */
const OUR_PROCESSES = 2, OUR_CONCURRENCY = 16;
/** The seed's Bull concurrency: as many slots as our two processes together. */
const SEED_CONCURRENCY = OUR_PROCESSES * OUR_CONCURRENCY;
/** Heavy-owner submissions in flight at once. */
const HEAVY_LANES = 16;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The small and the large workload of issue 17. */
export const WORKLOADS: Workload[] = [
  { name: "180 jobs @ 8/s", jobs: 180, limit: 8, latencyMs: 400 },
  { name: "2,000 jobs @ 50/s", jobs: 2_000, limit: 50, latencyMs: 400 },
];

/** One submission of the plan: `at` ms after the start, by `owner` (0 is the heavy one). */
interface Planned {
  at: number;
  owner: number;
}

/**
 * 80% of the jobs from owner 0 at t = 0; the rest from light owners, one every ~1.1-1.5 s each, all
 * within 90% of the ideal run (jobs ÷ limit).
 */
export function plan(workload: Workload): Planned[] {
  const heavy = Math.round(workload.jobs * 0.8);
  const light = workload.jobs - heavy;
  const idealMs = (workload.jobs / workload.limit) * 1000;
  const owners = Math.max(2, Math.round(light / (idealMs / 1500)));
  let seed = 17; // a fixed xorshift: both sides get the same times
  const random = () => {
    seed ^= seed << 13, seed ^= seed >>> 17, seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const jobs: Planned[] = Array.from({ length: heavy }, () => ({ at: 0, owner: 0 }));
  for (let k = 0; k < owners; k++) {
    const count = Math.floor(light / owners) + (k < light % owners ? 1 : 0);
    const gap = (idealMs * 0.9) / Math.max(1, count);
    const offset = random() * gap;
    for (let i = 0; i < count; i++) {
      // Every job is submitted within 90% of the ideal run, so the provider always has work queued
      // and utilization measures the scheduler, not a workload that ran dry.
      const at = Math.min(offset + i * gap * (0.75 + random() * 0.5), idealMs * 0.9);
      jobs.push({ at: Math.round(at), owner: k + 1 });
    }
  }
  return jobs;
}

/** A side under test: submits a job and reports each job's end through `end`. */
interface Side {
  /** Submits job `index` for `owner`; `register` gets the id before its end can be heard. */
  submit(owner: number, index: number, register: (id: string) => void): Promise<void>;
  close(): Promise<void>;
}

type End = (id: string, ok: boolean, error?: string) => void;

/** Runs the plan against a side until every job ended or the deadline; returns each job's trace. */
async function drive(
  side: Side,
  jobs: Planned[],
  deadlineMs: number,
  ends: { hook?: End },
): Promise<{ traces: JobTrace[]; start: number; submitErrors: string[] }> {
  const traces: JobTrace[] = [];
  const byId = new Map<string, JobTrace>();
  const submitErrors: string[] = [];
  const done = Promise.withResolvers<void>();
  let settled = 0;
  const settle = () => ++settled >= jobs.length && done.resolve();
  ends.hook = (id, ok, error) => {
    const trace = byId.get(id);
    if (!trace || trace.end !== undefined) return;
    trace.end = performance.now();
    trace.ok = ok;
    if (!ok && error) trace.error = error;
    settle();
  };
  const start = performance.now();
  async function one(index: number): Promise<void> {
    const { at, owner } = jobs[index];
    await sleep(Math.max(0, start + at - performance.now()));
    const trace: JobTrace = { owner, t0: performance.now() };
    traces.push(trace);
    try {
      await side.submit(owner, index, (id) => byId.set(id, trace));
    } catch (error) {
      if (trace.end !== undefined) return; // its end was heard anyway
      trace.end = performance.now();
      trace.ok = false;
      trace.error = `submit: ${error instanceof Error ? error.message : error}`;
      if (submitErrors.length < 5) submitErrors.push(trace.error);
      settle();
    }
  }
  const heavy = jobs.flatMap((j, i) => j.owner === 0 ? [i] : []);
  // Every submission settles by itself (one() catches); none is awaited past the deadline.
  for (let lane = 0; lane < HEAVY_LANES; lane++) {
    (async () => {
      while (heavy.length > 0) await one(heavy.shift()!);
    })();
  }
  jobs.forEach((j, i) => j.owner > 0 && one(i));
  const timer = setTimeout(done.resolve, deadlineMs);
  // Submissions still hanging at the deadline are left behind: their jobs count as lost.
  await done.promise;
  clearTimeout(timer);
  return { traces, start, submitErrors };
}

async function openSocket(url: string, token: string, end: End): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/ws`);
  const ready = Promise.withResolvers<void>();
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
  ws.onerror = () => ready.reject(new Error("Cannot open the WebSocket"));
  ws.onclose = (e) => ready.reject(new Error(`Cannot authenticate the WebSocket: ${e.code}`));
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.type === "authenticated") return ready.resolve();
    const n = message.notification;
    if (message.type !== "notification" || !TERMINAL.has(n?.type)) return;
    end(String(n.id), n.type === "succeeded", n.error);
    ws.send(JSON.stringify({ type: "unsubscribe", id: n.id }));
  };
  await ready.promise;
  return ws;
}

/** Our service: POST /v1/images, then a WebSocket subscription (it replays, so nothing is missed). */
async function ourSide(urls: string[], tokens: string[], end: End): Promise<Side> {
  const sockets = await Promise.all(
    tokens.map((token, owner) => openSocket(urls[owner % urls.length], token, end)),
  );
  return {
    async submit(owner, _index, register) {
      const response = await fetch(`${urls[owner % urls.length]}/v1/images`, {
        method: "POST",
        headers: { Authorization: `Bearer ${tokens[owner]}`, "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: PROMPT }),
      });
      const body = await response.json().catch(() => null);
      if (response.status !== 202) throw new Error(`status ${response.status}`);
      register(body.id);
      sockets[owner].send(JSON.stringify({ type: "subscribe", id: body.id }));
    },
    close: () => Promise.resolve(sockets.forEach((ws) => ws.close())),
  };
}

/** The seed's stack: every job's room joined before the start, then `POST /generate` per job. */
async function seedSide(
  stack: { url: string; relayUrl: string },
  tokens: string[],
  jobs: number,
  end: End,
): Promise<Side> {
  const tag = crypto.randomUUID().slice(0, 8);
  const sockets: Socket[] = await Promise.all(
    Array.from({ length: 4 }, () =>
      new Promise<Socket>((resolve, reject) => {
        const s = io(stack.relayUrl, { transports: ["websocket"], reconnection: false });
        s.once("connect", () => resolve(s));
        s.once("connect_error", reject);
      })),
  );
  for (const s of sockets) {
    s.on(
      "notification",
      (n: { Id: string; success: boolean; data: unknown }) =>
        end(String(n.Id), n.success === true, n.success ? undefined : String(n.data)),
    );
  }
  for (let i = 0; i < jobs; i += 500) {
    const batch = Array.from({ length: Math.min(500, jobs - i) }, (_, k) => i + k);
    await Promise.all(
      batch.map((j) => sockets[j % 4].timeout(10_000).emitWithAck("join", `${tag}-${j}`)),
    );
  }
  return {
    async submit(owner, index, register) {
      const id = `${tag}-${index}`;
      register(id);
      const response = await fetch(`${stack.url}/generate`, {
        method: "POST",
        headers: { Authorization: `Bearer ${tokens[owner]}`, "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: PROMPT, id }),
      });
      await response.body?.cancel();
      if (response.status !== 202) throw new Error(`status ${response.status}`);
    },
    close: () => Promise.resolve(void sockets.forEach((s) => s.close())),
  };
}

/** Runs one side on one workload with a fresh fake; every process it started is stopped after. */
async function runSide(
  bench: Bench,
  workload: Workload,
  which: "ours" | "seed",
  seedDir: string,
): Promise<Run> {
  const jobs = plan(workload);
  const owners = 1 + Math.max(...jobs.map((j) => j.owner));
  const tokens = bench.tokens.slice(0, owners);
  const deadlineMs = Math.max(60_000, 3 * (workload.jobs / workload.limit) * 1000 + 30_000);
  const fake = await startFakeXai({
    image: "jpeg",
    latencyMs: workload.latencyMs,
    rateLimit: { rps: workload.limit },
  });
  const ends: { hook?: End } = {};
  const end: End = (id, ok, error) => ends.hook?.(id, ok, error);
  const cleanups: (() => Promise<unknown>)[] = [() => fake.close()];
  try {
    let side: Side;
    if (which === "ours") {
      const prefix = `bench-provider-${workload.jobs}-${crypto.randomUUID().slice(0, 8)}:`;
      const env = serviceEnv(bench.redis, fake, {
        REDIS_PREFIX: prefix,
        WORKER_CONCURRENCY: String(OUR_CONCURRENCY),
        GROK_MAX_RPS: String(workload.limit),
        MAX_IMAGES_PER_OWNER_PER_DAY: "0",
        WS_MAX_SUBSCRIPTIONS: "100000",
        DRAIN_TIMEOUT_MS: "1000",
      });
      const services = await startServices(Array.from({ length: OUR_PROCESSES }, () => env));
      cleanups.unshift(() => services.stop());
      side = await ourSide(services.procs.map((p) => p.url), tokens, end);
    } else {
      const redis = await startRedis();
      cleanups.unshift(() => redis.stop());
      const stack = await startSeedStack(seedDir, {
        redisUrl: redis.url,
        grokApi: fake.url,
        secret: TEST_SECRET,
        concurrency: SEED_CONCURRENCY,
      });
      cleanups.unshift(() => stack.stop());
      side = await seedSide(stack, tokens, jobs.length, end);
    }
    cleanups.unshift(() => side.close());
    const driven = await drive(side, jobs, deadlineMs, ends);
    const run = figures(which, workload, { ...driven, fake, deadlineMs });
    bench.log(`  ${which} ${workload.name}: ${JSON.stringify(run.figures)}`);
    return run;
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => {});
  }
}

/** Scenario 10: ours and the seed, each workload (only the small one when quick), in one run. */
export async function providerScenario(bench: Bench): Promise<void> {
  const seedDir = await ensureSeedRef();
  const workloads = bench.quick ? WORKLOADS.slice(0, 1) : WORKLOADS;
  const runs: Run[] = [];
  for (const workload of workloads) {
    for (const which of ["ours", "seed"] as const) {
      runs.push(await runSide(bench, workload, which, seedDir));
    }
  }
  bench.raw.provider = runs;
  bench.rows.push(...providerRows(SCENARIO, runs));
  bench.tables = [...(bench.tables ?? []), providerTable(runs)];
}
