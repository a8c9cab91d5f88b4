/**
 * `deno task bench [--quick] [--backlog] [--provider | --provider-quick] [--upstash-push] [--store]`: starts its own redis-server,
 * fake xAI servers, the service (and the Node peer) as subprocesses, drives them from separate load
 * processes, prints a Markdown table and writes `bench/results/<timestamp>.json` (and, for a full run,
 * `bench/results/latest.md`).
 */
import { signToken } from "../tests/support/app.ts";
import { redisCommand, type RedisServer, startRedis } from "../tests/support/redis_server.ts";
import { ensureTool } from "./load.ts";
import { ensurePeerDeps } from "./processes.ts";
import { type Bench, markdown, save } from "./report.ts";
import { fanoutScenario, slowScenario } from "./scenarios_capacity.ts";
import { e2eScenario, peerScenario, scaleOutScenario } from "./scenarios_e2e.ts";
import { limitRows, measureLimits, submitScenario } from "./scenarios_http.ts";
import { startUpstashScenario } from "./scenarios_redis.ts";
import { backlogScenario } from "./scenarios_backlog.ts";
import { providerScenario } from "./scenarios_provider.ts";
import { pushScenario } from "./scenarios_push.ts";
import { storeScenario } from "./scenarios_store.ts";

const NOTES = `Notes:
- All processes share the machine: redis-server, the service, the load processes, the fake xAI (in the
  orchestrator) and, in scenario 8, Node. Scenarios 1-2 use wrk (one thread, 64 connections); the others use
  bench/driver.ts, one separate Deno process per run (fan-out: 4 processes).
- Ours, SSE: POST /v1/images with a Bearer HS256 JWT (64 owners), then GET /v1/jobs/:id/events with the
  same Bearer, read to the terminal event; latency is from the POST to the terminal event. Every job sends
  queued, started and succeeded, stores its image in Redis and is checked by magic number.
  WebSockets: 8 shared sockets per driver, authenticated by message; subscribe right after the 202.
- Peer (bench/peer): Express 5 + jsonwebtoken (HS256) + BullMQ 5 (Queue.add with attempts 5, removeOnComplete
  1000) + a BullMQ Worker with the same concurrency in the same Node process, calling the same fake xAI
  (b64_json, same image) and emitting only the terminal notification to the socket.io room owner:id. The
  driver uses 8 shared socket.io sockets (websocket transport), joins the room with an ack, then POSTs; the
  join is inside the latency. No tickets, no event log or replay, no queued/started events.
- Open loop: submissions at fixed intervals; completed jobs/s = terminal events / wall time. Maximum: closed
  loop with 128 jobs in flight, first second left out. Scenario 4: closed loop with WORKER_CONCURRENCY jobs
  in flight (started evenly over one latency), counted over 4 latencies; RSS per in-flight job is the
  slope of the service's RSS from a quarter of the concurrency to all of it (RSS never shrinks).
- Scenario 5: 100 jobs × 100 subscribers (SSE, then one WebSocket per subscriber on fresh processes) on a
  ROLE=api process; RSS before and after connecting; then a ROLE=worker process (concurrency 5, provider
  1 s) runs the jobs: 5 jobs/s × (started + succeeded) × 100 subscribers = 1,000 deliveries/s; latency is
  arrival minus the notification's \`at\`.
- Scenario 6: TCP counts are INFO commandstats deltas (with script internals) and MONITOR (top-level
  commands) around 200 jobs/s, and INFO deltas around the scenario-3 maximum; background reads included.
  Upstash counts are the REST proxy's forwarded commands. The \`other\` CPU in the JSON is load from
  outside the benchmark while a figure was taken.
- Scenario 10: one fake xAI per run with a token bucket (burst = limit; 429 with Retry-After at arrival) and
  400 ms per accepted call; 80% of the jobs from one owner at t = 0, light owners one job every ~1-2 s.
  Ours: 2 processes (WORKER_CONCURRENCY 16, GROK_MAX_RPS = limit) over WebSockets; the seed: server.js
  (Bull concurrency 32, the same slots) and its Socket.IO relay, against the same fake. Utilization:
  accepted calls/s from the first accepted call to the last, ÷ the limit. \`--provider\` runs it alone
  (\`--provider-quick\`: the 180-job workload only).
- Scenario 11 (\`--upstash-push\`, alone): Upstash through the REST proxy (which bills a subscribe, each
  message a subscription delivers, and each command), a ROLE=api and a ROLE=worker process, push wake-ups
  on (UPSTASH_PUSH=1) then off (polling, as before): idle commands/s over the quiet gaps, the start of a
  job submitted after 20 s of quiet (started \`at\` minus the POST), a subscriber hearing the end
  (arrival minus \`at\`), and commands per job at 2 jobs/s with an SSE subscriber each.
- Scenario 12 (\`--store\`, alone): scenario 9's backlog at WORKER_CONCURRENCY 32 (b64_json) with the images
  in Redis, then in an S3-compatible store (s3rver on 127.0.0.1 behind a counting proxy): Redis memory and
  network per job (INFO deltas), MEMORY USAGE of job hashes, the store's requests and bytes per job.`;

async function fileLimit(): Promise<number> {
  const output = await new Deno.Command("bash", { args: ["-c", "ulimit -n"] }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  return text === "unlimited" ? Infinity : Number(text);
}

/** Re-runs this script with a higher `ulimit -n` (65536, else the hard limit) when 10,000 sockets do not fit. */
async function withFileLimit(): Promise<number | null> {
  if (Deno.env.get("BENCH_ULIMIT") === "1" || (await fileLimit()) >= 16_384) return null;
  const command = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
  const script = new URL(import.meta.url).pathname;
  const status = await new Deno.Command("bash", {
    args: ["-c", command, Deno.execPath(), "run", "--allow-all", script, ...Deno.args],
    env: { BENCH_ULIMIT: "1" },
  }).spawn().status;
  return status.code;
}

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    const output = await new Deno.Command(cmd, { args, stderr: "null" }).output();
    return new TextDecoder().decode(output.stdout).trim().split("\n")[0];
  } catch {
    return "missing";
  }
}

async function scenario(bench: Bench, name: string, run: () => Promise<unknown>): Promise<void> {
  bench.log(name);
  try {
    await run();
  } catch (error) {
    bench.log(`${name} failed: ${error instanceof Error ? error.stack : error}`);
    bench.rows.push({
      scenario: name,
      figure: `error: ${error}`,
      value: null,
      unit: "",
      pass: false,
    });
  }
}

async function runAll(bench: Bench, redis: RedisServer): Promise<void> {
  limitRows(bench);
  await scenario(bench, "2. Submit", () => submitScenario(bench));
  await redisCommand(redis.port, ["FLUSHALL"]);
  let e2e: Awaited<ReturnType<typeof e2eScenario>> | undefined;
  await scenario(bench, "3. End to end, instant", async () => e2e = await e2eScenario(bench));
  let upstash: Awaited<ReturnType<typeof startUpstashScenario>> | undefined;
  await scenario(bench, "6. Redis cost", async () => upstash = await startUpstashScenario(bench));
  await scenario(bench, "4. Slow provider", () => slowScenario(bench));
  if (upstash) await scenario(bench, "6. Redis cost", () => upstash!.finish());
  await scenario(bench, "5. Fan-out (SSE)", () => fanoutScenario(bench));
  if (e2e) {
    const ours = e2e;
    await scenario(bench, "7. Scale-out", () => scaleOutScenario(bench, ours.max));
    await scenario(bench, "8. Peer (BullMQ + socket.io)", () => peerScenario(bench, ours));
  }
  await redisCommand(redis.port, ["FLUSHALL"]);
  await scenario(bench, "9. Backlog vs seed", () => backlogScenario(bench));
  await scenario(bench, "10. Provider-limited", () => providerScenario(bench));
}

/** `--backlog`: scenario 9 alone, without the limits (their figures are left at 0). */
async function backlogOnly(bench: Bench): Promise<void> {
  await scenario(bench, "9. Backlog vs seed", () => backlogScenario(bench));
}

async function main(): Promise<void> {
  const reran = await withFileLimit();
  if (reran !== null) Deno.exit(reran);
  const providerQuick = Deno.args.includes("--provider-quick");
  const provider = providerQuick || Deno.args.includes("--provider");
  const quick = Deno.args.includes("--quick") || providerQuick;
  const push = Deno.args.includes("--upstash-push");
  const store = Deno.args.includes("--store");
  const only = Deno.args.includes("--backlog") || provider || push || store;
  const profile = Deno.args.includes("--profile");
  const repeat = Number(Deno.args.find((a) => a.startsWith("--repeat="))?.slice(9) ?? 1);
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const log = (line: string) =>
    console.error(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`);
  if (!only) {
    await ensureTool("wrk", "wrk");
    await ensurePeerDeps();
  }
  const redis = await startRedis();
  let bench: Bench;
  try {
    if (!only) await ensureTool("redis-benchmark", "redis-tools");
    const tokens = await Promise.all(Array.from({ length: 64 }, (_, i) => signToken(`bench-${i}`)));
    if (only) {
      const limits = { helloRps: 0, helloP50Ms: 0, helloP99Ms: 0, xaddOps: 0, submitScriptOps: 0 };
      bench = { quick, redis, tokens, limits, rows: [], raw: {}, log, profile, repeat };
      if (push) await scenario(bench, "11. Upstash push", () => pushScenario(bench));
      else if (store) await scenario(bench, "12. Images outside Redis", () => storeScenario(bench));
      else if (provider) {
        await scenario(bench, "10. Provider-limited", () => providerScenario(bench));
      } else await backlogOnly(bench);
    } else {
      log("1. Limits");
      const measured = await measureLimits({ quick, redis, log });
      bench = { quick, redis, tokens, limits: measured.limits, rows: [], raw: measured.raw, log };
      Object.assign(bench, { profile, repeat });
      await redisCommand(redis.port, ["FLUSHALL"]);
      await runAll(bench, redis);
    }
  } finally {
    await redis.stop();
  }
  const order = (s: string) => Number.parseInt(s, 10) || 99;
  bench.rows.sort((a, b) => order(a.scenario) - order(b.scenario));
  const table = [markdown(bench.rows), ...(bench.tables ?? [])].join("\n\n");
  const durationSec = Math.round((performance.now() - t0) / 1000);
  const machine = `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ` +
    `Node ${await version("node", ["--version"])}, ${await version("redis-server", ["--version"])}`;
  const alone = push
    ? ", Upstash push only"
    : store
    ? ", image store only"
    : provider
    ? ", provider-limited only"
    : only
    ? ", backlog only"
    : "";
  const mode = `${quick ? "quick" : "full"}${alone}`;
  const meta = { mode, startedAt, durationSec, machine, notes: NOTES };
  const path = await save(bench, meta, table);
  console.log(`${table}\n\n${NOTES}\n\nRaw numbers: ${path} (${durationSec} s)`);
}

if (import.meta.main) await main();
