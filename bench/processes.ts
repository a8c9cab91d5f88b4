/** Starting the benchmark's processes: the service, the Node peer, and the load drivers. */
import { TEST_SECRET } from "../tests/support/app.ts";
import type { FakeXai } from "../tests/support/fake_xai.ts";
import type { RedisServer } from "../tests/support/redis_server.ts";
import { type ServiceProcess, startService } from "../tests/support/service.ts";
import type { E2eConfig, E2eStats } from "./driver.ts";
import type { FanoutConfig } from "./driver_fanout.ts";
import type { Bench } from "./report.ts";
import { sleep, withCpu } from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DRIVER = new URL("./driver.ts", import.meta.url).pathname;
const PEER_DIR = new URL("./peer/", import.meta.url).pathname;

/** The service's environment for a benchmark: no rate limits or caps, warnings only. */
export function serviceEnv(
  redis: RedisServer,
  xai: Pick<FakeXai, "url" | "host">,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "k",
    GROK_MAX_RPS: "0", // measures the service, not the provider's pace
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    RATE_LIMIT_PER_MINUTE: "0",
    MAX_ACTIVE_JOBS_PER_OWNER: "0",
    MAX_STREAMS_PER_OWNER: "0",
    MAX_QUEUE_LENGTH: "0",
    LOG_LEVEL: "warning",
    WORKER_CONCURRENCY: "64",
    ...extra,
  };
}

/** Starts `main.ts` processes one after another; `stop` ends all of them. */
export async function startServices(
  envs: Record<string, string>[],
): Promise<{ procs: ServiceProcess[]; stop(): Promise<void> }> {
  const procs: ServiceProcess[] = [];
  try {
    for (const env of envs) procs.push(await startService(env));
  } catch (error) {
    await Promise.all(procs.map((p) => p.stop()));
    throw error;
  }
  return { procs, stop: async () => void await Promise.all(procs.map((p) => p.stop())) };
}

/** Runs bench/driver.ts in its own process and returns its stats. */
export async function runDriver(config: Omit<E2eConfig, "mode">): Promise<E2eStats> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", DRIVER, JSON.stringify({ mode: "e2e", ...config })],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const output = await child.output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || !text) {
    throw new Error(
      `Cannot run the driver: ${new TextDecoder().decode(output.stderr).slice(-800)}`,
    );
  }
  return JSON.parse(text.split("\n").at(-1)!);
}

/** A fan-out driver process, under `ulimit -n 65536`. */
export interface FanoutDriver {
  /** Resolves with the `connected` line. */
  connected: Promise<{ connected: number; failed: number; connectMs: number }>;
  /** Sends `stop` and resolves with the `done` line. */
  finish(): Promise<Record<string, unknown>>;
  kill(): void;
}

/** Starts one fan-out driver. */
export function startFanoutDriver(config: Omit<FanoutConfig, "mode">): FanoutDriver {
  const json = JSON.stringify({ mode: "fanout", ...config });
  const command = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
  const child = new Deno.Command("bash", {
    args: ["-c", command, Deno.execPath(), "run", "--allow-all", DRIVER, json],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  async function nextLine(): Promise<Record<string, unknown>> {
    while (!buffer.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("Cannot read the fan-out driver: it exited");
      buffer += value;
    }
    const index = buffer.indexOf("\n");
    const line = buffer.slice(0, index);
    buffer = buffer.slice(index + 1);
    return JSON.parse(line);
  }
  const connected = nextLine() as FanoutDriver["connected"];
  const writer = child.stdin.getWriter();
  return {
    connected,
    async finish() {
      await connected;
      await writer.write(new TextEncoder().encode("stop\n"));
      const done = await nextLine();
      await writer.close().catch(() => {});
      await child.status;
      return done;
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}

/** Installs the peer's npm packages (`npm ci`) when bench/peer/node_modules is missing. */
export async function ensurePeerDeps(): Promise<void> {
  try {
    await Deno.stat(`${PEER_DIR}node_modules/bullmq`);
    return;
  } catch {
    // not installed yet
  }
  console.error("Installing the peer's npm packages (npm ci in bench/peer)…");
  const output = await new Deno.Command("npm", {
    args: ["ci", "--no-audit", "--no-fund"],
    cwd: PEER_DIR,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`Cannot install the peer: ${new TextDecoder().decode(output.stderr)}`);
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts the BullMQ + socket.io peer on Node and waits until it answers. */
export async function startPeer(
  env: Record<string, string>,
): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = freePort();
  const child = new Deno.Command("node", {
    args: [`${PEER_DIR}server.mjs`],
    env: { ...env, PORT: String(port) },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0;; i++) {
    try {
      const response = await fetch(`${url}/healthz`);
      await response.body?.cancel();
      if (response.ok) break;
    } catch {
      if (i > 200) throw new Error("Cannot start the peer: no answer in 10 s");
      await sleep(50);
    }
  }
  return {
    url,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** Prompt every benchmark job uses. */
export const PROMPT = "a red fox in snow";
/** Jobs the closed-loop "maximum" keeps in flight per driver. */
export const MAX_IN_FLIGHT = 128;

/** A driver run without the settings every run shares. */
export type Drive = Omit<E2eConfig, "mode" | "url" | "tokens" | "prompt" | "sockets" | "drainMs">;

/** Runs the driver against `url` with the bench's tokens, measuring the CPU of `pids`. */
export async function drive(
  bench: Bench,
  url: string,
  config: Drive,
  pids: Record<string, number>,
): Promise<E2eStats & { cpuPercent: Record<string, number> }> {
  const { result, cpu } = await withCpu(pids, () =>
    runDriver({
      url,
      tokens: bench.tokens,
      prompt: PROMPT,
      sockets: 8,
      drainMs: 5_000,
      ...config,
    }));
  // Whatever else ran on the machine meanwhile (other users, the kernel): a sign of a disturbed figure.
  const ours = Object.entries(cpu).reduce((n, [k, v]) => k === "machine" ? n : n + v, 0);
  cpu.driver = result.driverCpuPercent;
  cpu.other = Math.max(0, cpu.machine - ours - result.driverCpuPercent);
  bench.log(
    `  ${config.transport} ${JSON.stringify(config.rate ?? `max ${config.inFlight}`)}: ` +
      `${result.jobsPerSec} jobs/s p50 ${result.latencyMs.p50} p99 ${result.latencyMs.p99} ` +
      `errors ${result.errors} unfinished ${result.unfinished} cpu % ` +
      JSON.stringify(cpu),
  );
  return { ...result, cpuPercent: cpu };
}

/** The closed-loop maximum: MAX_IN_FLIGHT jobs in flight, the first part left out as warm-up. */
export function maxLoad(bench: Bench, transport: E2eConfig["transport"]): Drive {
  return bench.quick
    ? { transport, inFlight: MAX_IN_FLIGHT, durationMs: 1_500, warmupMs: 500 }
    : { transport, inFlight: MAX_IN_FLIGHT, durationMs: 8_000, warmupMs: 1_000 };
}
