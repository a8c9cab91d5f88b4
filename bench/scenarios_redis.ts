/** Scenario 6: Redis commands and round trips per job (TCP and Upstash REST), and an idle instance's cost. */
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { redisCommand } from "../tests/support/redis_server.ts";
import { startUpstashProxy } from "../tests/support/upstash_proxy.ts";
import { drive, serviceEnv, startServices } from "./processes.ts";
import type { Bench } from "./report.ts";
import { sleep } from "./stats.ts";

const SCENARIO = "6. Redis cost";

async function commandStats(port: number): Promise<Map<string, number>> {
  const text = String(await redisCommand(port, ["INFO", "commandstats"]));
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls.set(match[1], Number(match[2]));
  }
  return calls;
}

function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, calls] of after) {
    const d = calls - (before.get(name) ?? 0);
    if (d > 0 && name !== "info" && name !== "monitor") out[name] = d;
  }
  return out;
}

/** Counts the commands MONITOR shows: top-level ones by name, and those run inside scripts. */
async function monitor(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("MONITOR\r\n"));
  const topLevel: Record<string, number> = {};
  let inScripts = 0;
  const reading = (async () => {
    let rest = "";
    try {
      for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split("\r\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          const match = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
          if (!match) continue;
          const name = match[2].toLowerCase();
          if (match[1] === "lua") inScripts++;
          else if (name !== "info") topLevel[name] = (topLevel[name] ?? 0) + 1;
        }
      }
    } catch {
      // closed by stop()
    }
  })();
  return {
    async stop() {
      conn.close();
      await reading;
      return { topLevel, inScripts };
    },
  };
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

/** Runs `work` and returns its result with the Redis commands (script internals included) it caused. */
export async function countCommands<T>(
  port: number,
  work: () => Promise<T>,
): Promise<{ result: T; commands: number; calls: Record<string, number> }> {
  const before = await commandStats(port);
  const result = await work();
  const calls = delta(before, await commandStats(port));
  return { result, commands: sum(calls), calls };
}

/** Commands per job on the scenario-3 service (TCP Redis), at a moderate rate, SSE per job. */
export async function redisCostScenario(
  bench: Bench,
  url: string,
  pids: Record<string, number>,
): Promise<void> {
  const port = bench.redis.port;
  await sleep(300);
  const watch = await monitor(port);
  const before = await commandStats(port);
  const rate = 200;
  const s = await drive(bench, url, {
    transport: "sse",
    rate,
    durationMs: bench.quick ? 1_000 : 3_000,
  }, pids);
  await sleep(300);
  const after = await commandStats(port);
  const seen = await watch.stop();
  const calls = delta(before, after);
  const jobs = s.succeeded + s.failed;
  const all = sum(calls) / jobs;
  const trips = sum(seen.topLevel) / jobs;
  bench.raw.redisCost = { jobs, rate, calls, monitor: seen };
  bench.rows.push(
    {
      scenario: SCENARIO,
      figure: `TCP: commands per job, incl. script internals (${rate} jobs/s, SSE)`,
      value: all,
      unit: "",
      target: "≤ 12",
      pass: all <= 12,
    },
    {
      scenario: SCENARIO,
      figure: "TCP: client round trips (top-level commands) per job",
      value: trips,
      unit: "",
    },
    {
      scenario: SCENARIO,
      figure: "TCP: EVALSHA per job",
      value: ((calls.evalsha ?? 0) + (calls.eval ?? 0)) / jobs,
      unit: "",
    },
  );
}

/** The Upstash path through the REST proxy: an idle instance's commands/s, then commands per job. */
export async function startUpstashScenario(bench: Bench) {
  const token = "bench-upstash-token";
  const proxy = await startUpstashProxy({ redisUrl: bench.redis.url, token });
  const xai = await startFakeXai();
  const services = await startServices([
    serviceEnv(bench.redis, xai, {
      REDIS_URL: "",
      UPSTASH_REDIS_REST_URL: proxy.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      REDIS_PREFIX: "bench-upstash:",
    }),
  ]);
  const [service] = services.procs;
  const started = performance.now();
  // Leave the start-up polls (which back off from 100 ms to 8 s) out of the idle window.
  const settleMs = bench.quick ? 2_000 : 14_000;
  const idleMs = bench.quick ? 4_000 : 20_000;
  const idle = (async () => {
    await sleep(settleMs);
    const from = proxy.commands;
    await sleep(idleMs);
    return ((proxy.commands - from) * 1000) / idleMs;
  })();
  return {
    /** Milliseconds still needed before the idle window ends. */
    remainingMs: () => Math.max(0, settleMs + idleMs - (performance.now() - started)),
    async finish(): Promise<void> {
      try {
        const perSec = await idle;
        const from = proxy.commands;
        const s = await drive(bench, service.url, {
          transport: "sse",
          rate: 50,
          durationMs: bench.quick ? 1_000 : 4_000,
        }, { service: service.pid });
        await sleep(200);
        const jobs = s.succeeded + s.failed;
        const perJob = (proxy.commands - from) / Math.max(1, jobs);
        bench.raw.upstash = { idleCommandsPerSec: perSec, idleMs, jobs, perJob, stats: s };
        bench.rows.push(
          {
            scenario: SCENARIO,
            figure: `Upstash REST: idle instance, commands/s (over ${idleMs / 1000} s)`,
            value: perSec,
            unit: "cmd/s",
            target: "≤ 0.5",
            pass: perSec <= 0.5,
          },
          {
            scenario: SCENARIO,
            figure: "Upstash REST: commands per job (50 jobs/s, SSE)",
            value: perJob,
            unit: "",
          },
        );
      } finally {
        await services.stop();
        await xai.close();
        await proxy.close();
      }
    },
  };
}
