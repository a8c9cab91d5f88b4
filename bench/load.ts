/** The machine's limits and the HTTP load generator: wrk, redis-benchmark and a bare Deno.serve. */
import { sleep } from "./stats.ts";
import { GROUP } from "../lib/queue/redis_context.ts";
import { CREATE } from "../lib/queue/scripts_submit.ts";
import { redisCommand } from "../tests/support/redis_server.ts";

/** What one wrk run measured. */
export interface WrkResult {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Non-2xx/3xx answers plus socket errors. */
  errors: number;
}

/** Options of one wrk run; a POST body makes wrk send it with each token in turn as Bearer. */
export interface WrkOptions {
  connections: number;
  durationSec: number;
  post?: { path: string; body: string; tokens: string[] };
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const output = await new Deno.Command(cmd, { args, stdin: "null", stderr: "piped" }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { ok: output.success, out: text };
}

async function installed(cmd: string): Promise<boolean> {
  try {
    await new Deno.Command(cmd, { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** Installs a Debian package with apt-get when `cmd` is missing and we are root; throws otherwise. */
export async function ensureTool(cmd: string, pkg: string): Promise<void> {
  if (await installed(cmd)) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot run the benchmark: ${cmd} is missing; run \`sudo apt-get install -y ${pkg}\``,
    );
  }
  console.error(`Installing ${pkg} with apt-get…`);
  if (!(await run("apt-get", ["install", "-y", pkg])).ok) {
    await run("apt-get", ["update"]);
    const second = await run("apt-get", ["install", "-y", pkg]);
    if (!second.ok) throw new Error(`Cannot install ${pkg}: ${second.out.slice(-500)}`);
  }
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n;
}

function luaString(text: string): string {
  return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function postScript(post: NonNullable<WrkOptions["post"]>): string {
  return `local tokens = {${post.tokens.map(luaString).join(", ")}}
local requests = {}
local i = 0
init = function(args)
  for _, token in ipairs(tokens) do
    requests[#requests + 1] = wrk.format("POST", ${luaString(post.path)}, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
    }, ${luaString(post.body)})
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
`;
}

/** Runs wrk with one thread against `url` and parses its summary. */
export async function runWrk(url: string, options: WrkOptions): Promise<WrkResult> {
  const args = ["-t1", `-c${options.connections}`, `-d${options.durationSec}s`, "--latency"];
  let script: string | undefined;
  if (options.post) {
    script = await Deno.makeTempFile({ suffix: ".lua" });
    await Deno.writeTextFile(script, postScript(options.post));
    args.push("-s", script);
  }
  try {
    const { ok, out } = await run("wrk", [...args, url]);
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
    if (!ok || !rps) throw new Error(`Cannot run wrk: ${out.slice(-500)}`);
    const pct = (p: string) => {
      const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)`, "m").exec(out);
      return m ? toMs(m[1], m[2]) : NaN;
    };
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const socketErrors = socket ? socket.slice(1).reduce((n, v) => n + Number(v), 0) : 0;
    return {
      requestsPerSec: Math.round(Number(rps[1])),
      p50Ms: pct("50"),
      p99Ms: pct("99"),
      requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
      errors: non2xx + socketErrors,
    };
  } finally {
    if (script) await Deno.remove(script).catch(() => {});
  }
}

/** Runs `redis-benchmark` with `XADD` (50 clients, no pipelining) and returns ops/s. */
export async function xaddOpsPerSec(port: number, requests: number): Promise<number> {
  const { ok, out } = await run("redis-benchmark", [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-c",
    "50",
    "-n",
    String(requests),
    "--csv",
    "XADD",
    "bench:xadd",
    "MAXLEN",
    "~",
    "100000",
    "*",
    "field",
    "value",
  ]);
  const row = out.trim().split("\n").find((line) => line.startsWith('"XADD'));
  if (!ok || !row) throw new Error(`Cannot run redis-benchmark: ${out.slice(-500)}`);
  return Math.round(Number(JSON.parse(`[${row}]`)[1]));
}

/**
 * Runs `redis-benchmark` with the service's own submit script (EVALSHA of CREATE, a new random job id
 * each call, no limits) and returns ops/s: what Redis alone can accept, whatever the HTTP side does.
 */
export async function submitScriptOpsPerSec(port: number, requests: number): Promise<number> {
  const prefix = "bench-script:";
  const sha = String(await redisCommand(port, ["SCRIPT", "LOAD", CREATE]));
  const queued = JSON.stringify({
    id: "x",
    type: "queued",
    success: true,
    at: new Date().toISOString(),
  });
  const { ok, out } = await run("redis-benchmark", [
    ...["-h", "127.0.0.1", "-p", String(port), "-c", "50", "-n", String(requests)],
    ...[
      "-r",
      "100000000",
      "--csv",
      "EVALSHA",
      sha,
      "8",
      `${prefix}job:__rand_int__`,
      `${prefix}jobs`,
    ],
    // KEYS: feed, webhook outbox, waiting room, its clock, the pace, the owner's index (no limits:
    // no active set, no rate counter, no usage).
    ...[`${prefix}events`, `${prefix}webhooks`, `${prefix}room`, `${prefix}clock`],
    ...[`${prefix}pace`, `${prefix}owner:o:jobs`],
    // ARGV 1-8: id, owner, prompt, model, aspect, now, ttl, the queued notification.
    ...["__rand_int__", "owner", "a red fox", "", "", new Date().toISOString(), "600", queued],
    // ARGV 9-19: enqueue, no limits, the feed's floor, now (ms), no webhook, index ttl, fresh id.
    ...["1", "0", "0", "0", "0", "0-0", String(Date.now()), "", "", "600", "1"],
    // ARGV 20-25: unpaced, the group, no quota, one image, the day's end, the index cutoff; then no
    // more fields (k = 0) and no references (r = 0).
    ...["-1", GROUP, "0", "1", "86400", "0", "0", "0"],
  ]);
  const row = out.trim().split("\n").find((line) => line.startsWith('"EVALSHA'));
  // The test name quotes the script's JSON argument, so read the first number field after it.
  const ops = row?.match(/","(\d+(?:\.\d+)?)"/)?.[1];
  if (!ok || !ops) throw new Error(`Cannot run redis-benchmark: ${out.slice(-500)}`);
  await redisCommand(port, [
    "DEL",
    ...["jobs", "events", "owner:o:jobs", "room", "clock", "pace"].map((k) => `${prefix}${k}`),
  ]);
  return Math.round(Number(ops));
}

/** Starts bench/hello_server.ts (a bare Deno.serve) on `port`; returns a stop function. */
export async function startHello(port: number): Promise<{ pid: number; stop(): Promise<void> }> {
  const script = new URL("./hello_server.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", script, String(port)],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      await response.body?.cancel();
      break;
    } catch {
      await sleep(50);
    }
  }
  return {
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}
