/**
 * Scenario 11 (`deno task bench --upstash-push`): Upstash through the REST proxy, with push wake-ups
 * (UPSTASH_PUSH=1) and without (0, polling as before): an idle deployment's commands/s, the start of a
 * job submitted after 20 s of quiet, a subscriber hearing a job's end, and commands per job.
 * Two processes: ROLE=api (submits, SSE) and ROLE=worker, so a submit reaches the worker only through
 * Redis (a wake-up or a poll), never in memory.
 */
import { startFakeXai } from "../tests/support/fake_xai.ts";
import { redisCommand } from "../tests/support/redis_server.ts";
import { startUpstashProxy, type UpstashProxy } from "../tests/support/upstash_proxy.ts";
import { serviceEnv, startServices } from "./processes.ts";
import type { Bench } from "./report.ts";
import { sleep, summarize } from "./stats.ts";

const SCENARIO = "11. Upstash push";

/** One job: POST, then its SSE stream to the end; times of its events on the service's clock. */
async function oneJob(url: string, token: string) {
  const submitted = Date.now();
  const post = await fetch(`${url}/v1/images`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ prompt: "a red fox in snow" }),
  });
  const { id } = await post.json();
  const sse = await fetch(`${url}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
  });
  const reader = sse.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let startedAt: number | null = null;
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Cannot read job ${id}: the stream ended early`);
    const arrived = Date.now();
    buffer += value;
    for (let i = buffer.indexOf("\n\n"); i >= 0; i = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      const data = block.split("\n").find((line) => line.startsWith("data:"));
      if (!data) continue;
      const event = JSON.parse(data.slice(5));
      if (event.type === "started") startedAt = Date.parse(event.at);
      if (event.type === "succeeded" || event.type === "failed") {
        await reader.cancel();
        return {
          startMs: (startedAt ?? NaN) - submitted,
          heardMs: arrived - Date.parse(event.at),
        };
      }
    }
  }
}

interface Side {
  idlePerSec: number;
  idleSec: number;
  start: ReturnType<typeof summarize>;
  heard: ReturnType<typeof summarize>;
  perJob: number;
  jobs: number;
}

/** Commands Redis has processed (INFO stats), for the TCP side, which has no proxy to count them. */
async function processed(port: number): Promise<number> {
  const info = String(await redisCommand(port, ["INFO", "stats"]));
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
}

type Mode = "push" | "poll" | "tcp";

/** One deployment (Upstash with push on or off, or TCP): idle gaps, jobs after quiet, a trickle. */
async function side(bench: Bench, proxy: UpstashProxy, mode: Mode): Promise<Side> {
  const xai = await startFakeXai();
  const port = bench.redis.port;
  const count = mode === "tcp" ? () => processed(port) : () => Promise.resolve(proxy.commands);
  const transport: Record<string, string> = mode === "tcp" ? {} : {
    REDIS_URL: "",
    UPSTASH_REDIS_REST_URL: proxy.url,
    UPSTASH_REDIS_REST_TOKEN: "bench-push-token",
    UPSTASH_PUSH: mode === "push" ? "1" : "0",
  };
  const env = (role: string) =>
    serviceEnv(bench.redis, xai, {
      ...transport,
      REDIS_PREFIX: `bench-push-${mode}:`,
      WORKER_CONCURRENCY: "8",
      ROLE: role,
    });
  const services = await startServices([env("worker"), env("api")]);
  const api = services.procs[1];
  try {
    const token = bench.tokens[0];
    await sleep(3_000);
    await oneJob(api.url, token); // warm-up
    const quietMs = bench.quick ? 4_000 : 20_000;
    const samples = bench.quick ? 3 : 8;
    let idleCommands = 0;
    let idleMs = 0;
    const starts: number[] = [];
    const heard: number[] = [];
    for (let i = 0; i < samples; i++) {
      await sleep(2_000); // the job's own reads end
      const from = await count();
      await sleep(quietMs - 2_000);
      idleCommands += (await count()) - from;
      idleMs += quietMs - 2_000;
      const job = await oneJob(api.url, token);
      starts.push(job.startMs);
      heard.push(job.heardMs);
    }
    // Commands per job: one job every 500 ms with its SSE subscriber (as a front end would).
    const trickle = bench.quick ? 10 : 40;
    await sleep(2_000);
    const from = await count();
    const runs: Promise<{ heardMs: number }>[] = [];
    for (let i = 0; i < trickle; i++) {
      runs.push(oneJob(api.url, bench.tokens[i % bench.tokens.length]));
      await sleep(500);
    }
    for (const run of await Promise.all(runs)) heard.push(run.heardMs);
    await sleep(1_000);
    const perJob = ((await count()) - from) / trickle;
    return {
      idlePerSec: (idleCommands * 1000) / idleMs,
      idleSec: idleMs / 1000,
      start: summarize(starts),
      heard: summarize(heard),
      perJob,
      jobs: samples + trickle,
    };
  } finally {
    await services.stop();
    await xai.close();
  }
}

/** Runs both sides through one proxy and adds their rows. */
export async function pushScenario(bench: Bench): Promise<void> {
  const proxy = await startUpstashProxy({ redisUrl: bench.redis.url, token: "bench-push-token" });
  try {
    const on = await side(bench, proxy, "push");
    bench.log(`${SCENARIO}: push ${JSON.stringify(on)}`);
    const off = await side(bench, proxy, "poll");
    bench.log(`${SCENARIO}: poll ${JSON.stringify(off)}`);
    const tcp = await side(bench, proxy, "tcp");
    bench.log(`${SCENARIO}: tcp ${JSON.stringify(tcp)}`);
    bench.raw.upstashPush = { push: on, poll: off, tcp };
    const perInstance = on.idlePerSec / 2;
    bench.rows.push(
      {
        scenario: SCENARIO,
        figure: `idle, commands/s per process, push (2 processes, ${on.idleSec} s of quiet)`,
        value: perInstance,
        unit: "cmd/s",
        target: "≤ 0.02",
        pass: perInstance <= 0.02,
      },
      {
        scenario: SCENARIO,
        figure: "idle, commands/s per process, polling (before)",
        value: off.idlePerSec / 2,
        unit: "cmd/s",
      },
      {
        scenario: SCENARIO,
        figure: `job start after ${bench.quick ? 4 : 20} s of quiet, p95, push`,
        value: on.start.p95,
        unit: "ms",
        target: "≤ 150",
        pass: (on.start.p95 ?? Infinity) <= 150,
      },
      {
        scenario: SCENARIO,
        figure: "job start after quiet, p95, polling (before)",
        value: off.start.p95,
        unit: "ms",
      },
      {
        scenario: SCENARIO,
        figure: `subscriber hears the job's end, p95, push (${on.jobs} jobs)`,
        value: on.heard.p95,
        unit: "ms",
        target: "≤ 150",
        pass: (on.heard.p95 ?? Infinity) <= 150,
      },
      {
        scenario: SCENARIO,
        figure: "subscriber hears the job's end, p95, polling (before)",
        value: off.heard.p95,
        unit: "ms",
      },
      {
        scenario: SCENARIO,
        figure: "commands per job (2 jobs/s, SSE each), push",
        value: on.perJob,
        unit: "",
      },
      {
        scenario: SCENARIO,
        figure: "commands per job (2 jobs/s, SSE each), polling (before)",
        value: off.perJob,
        unit: "",
      },
      {
        scenario: SCENARIO,
        figure: "TCP Redis, blocking reads, no pub/sub: job start after quiet, p95",
        value: tcp.start.p95,
        unit: "ms",
      },
      {
        scenario: SCENARIO,
        figure: "TCP Redis, blocking reads, no pub/sub: subscriber hears the end, p95",
        value: tcp.heard.p95,
        unit: "ms",
      },
      {
        scenario: SCENARIO,
        figure: "TCP Redis: idle commands/s per process (blocking reads renewing)",
        value: tcp.idlePerSec / 2,
        unit: "cmd/s",
      },
    );
  } finally {
    await proxy.close();
  }
}
