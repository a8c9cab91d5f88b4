/**
 * The seed's own stack (`../shared/peers/seed_ref`: Express + Bull + Socket.IO) for side-by-side runs: a
 * writable copy with its npm packages, its fake xAI (which our service calls too), and its `run.sh`,
 * with the CPU of its worker and relay and its Redis commands read from /proc and INFO while it runs.
 */
import { type RedisDelta, redisDelta, type RedisSnapshot, redisSnapshot } from "./redis_info.ts";
import { cpuMs, machineCpuMs, sleep } from "./stats.ts";

const SOURCE = new URL("../../shared/peers/seed_ref/", import.meta.url).pathname;

async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  const output = await new Deno.Command(cmd, { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(
      `Cannot run ${cmd} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
}

/**
 * Copies the seed's folder (read-only in shared/) to `$TMPDIR/imagejobs-bench-seed_ref` and runs
 * `npm ci` there on first use; later calls refresh the sources and keep node_modules. Returns the copy.
 */
export async function ensureSeedRef(): Promise<string> {
  try {
    await Deno.stat(`${SOURCE}run.sh`);
  } catch {
    throw new Error(`Cannot find the seed's stack: ${SOURCE} is missing (shared/ beside the repo)`);
  }
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/imagejobs-bench-seed_ref`;
  await Deno.mkdir(dir, { recursive: true });
  await run("cp", ["-rT", SOURCE, dir]);
  await run("chmod", ["-R", "u+w", dir]);
  try {
    await Deno.stat(`${dir}/node_modules/bull`);
  } catch {
    console.error(`Installing the seed's npm packages (npm ci in ${dir})…`);
    await run("npm", ["ci", "--no-audit", "--no-fund"], dir);
  }
  return dir;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The seed's fake xAI (a fixed 20,480-byte JPEG), as a Node process. */
export interface SeedFake {
  /** API base for GROK_API (`POST {url}/images/generations`). */
  url: string;
  /** `127.0.0.1:PORT`, for IMAGE_HOSTS. */
  host: string;
  /** Where the expected bytes are served. */
  expectedUrl: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts `node fake_xai.mjs` from the seed's copy on a free port. */
export async function startSeedFake(dir: string): Promise<SeedFake> {
  const port = freePort();
  const child = new Deno.Command("node", {
    args: ["fake_xai.mjs", "--port", String(port)],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const host = `127.0.0.1:${port}`;
  const expectedUrl = `http://${host}/img/expected.jpg`;
  for (let i = 0;; i++) {
    try {
      const response = await fetch(expectedUrl);
      await response.body?.cancel();
      if (response.ok) break;
    } catch {
      if (i > 200) throw new Error("Cannot start the seed's fake xAI: no answer in 10 s");
      await sleep(50);
    }
  }
  return {
    url: `http://${host}/v1`,
    host,
    expectedUrl,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** The seed's `run.sh` JSON line, plus what was measured around its driver. */
export interface SeedResult {
  report: {
    jobs: number;
    jobs_per_s: number;
    completed: number;
    failed: number;
    lost: number;
    duplicates: number;
    image_mismatch: number;
    duration_s: number;
    latency_ms: { p50: number; p90: number; p99: number; max: number };
    [key: string]: unknown;
  };
  /** CPU ms of each seed process while drive.mjs ran (room joins included), and of the whole `machine`. */
  cpuMs: Record<string, number>;
  /** Redis calls while drive.mjs ran (Bull's scripts' internals included). */
  redis: RedisDelta | null;
}

function children(ppid: number): { pid: number; cmdline: string }[] {
  const found = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== ppid) continue;
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
      found.push({ pid, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const ROLES: [string, RegExp][] = [
  ["worker", /(^|\s)server\.js/],
  ["relay", /notification-server\.js/],
  ["fake", /fake_xai\.mjs/],
  ["driver", /drive\.mjs/],
  ["redis", /redis-server/],
];

/** Runs `run.sh --jobs N --rate 0 --concurrency C`, sampling its processes until its driver exits. */
export async function runSeed(
  dir: string,
  { jobs, concurrency, timeoutS }: { jobs: number; concurrency: number; timeoutS: number },
): Promise<SeedResult> {
  const args = [
    "run.sh",
    "--jobs",
    String(jobs),
    "--rate",
    "0",
    "--concurrency",
    String(concurrency),
  ];
  const child = new Deno.Command("bash", {
    args: [...args, "--timeout-s", String(timeoutS)],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = new Response(child.stdout).text();
  const err = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const first: Record<string, number> = {};
  const latest: Record<string, number> = {};
  let redisPort = 0;
  let redisBefore: RedisSnapshot | null = null, redisLatest: RedisSnapshot | null = null;
  let driverSeen = false, lastRedisPoll = 0;
  while (!exited) {
    const procs = children(child.pid);
    const roles = new Map<string, number>();
    for (const { pid, cmdline } of procs) {
      const role = ROLES.find(([, re]) => re.test(cmdline))?.[0];
      if (role) roles.set(role, pid);
      if (role === "redis") redisPort = Number(/:(\d+)/.exec(cmdline)?.[1] ?? 0);
    }
    const driverAlive = roles.has("driver");
    if (driverAlive || !driverSeen) {
      if (driverAlive) {
        const machine = machineCpuMs();
        first.machine ??= machine;
        latest.machine = machine;
      }
      for (const [role, pid] of roles) {
        const ms = cpuMs(pid);
        if (ms === null) continue;
        if (driverAlive && first[role] === undefined) first[role] = ms;
        if (driverAlive) latest[role] = ms;
      }
      if (driverAlive && redisPort && performance.now() - lastRedisPoll >= 50) {
        lastRedisPoll = performance.now();
        const snap = await redisSnapshot(redisPort, "commandstats").catch(() => null);
        if (snap) {
          redisBefore ??= snap;
          redisLatest = snap;
        }
      }
      driverSeen ||= driverAlive;
    }
    await sleep(20);
  }
  const { code } = await status;
  const text = (await out).trim();
  if (!text) {
    throw new Error(`Cannot run the seed's stack (exit ${code}): ${(await err).slice(-800)}`);
  }
  const cpu: Record<string, number> = {};
  for (const role of Object.keys(latest)) cpu[role] = latest[role] - first[role];
  return {
    report: JSON.parse(text.split("\n").at(-1)!),
    cpuMs: cpu,
    redis: redisBefore && redisLatest ? redisDelta(redisBefore, redisLatest) : null,
  };
}

/** The seed's worker (`server.js`) and relay (`notification-server.js`), started by startSeedStack. */
export interface SeedStack {
  /** The worker's Express base: `POST {url}/generate` with `{prompt, id}` and a Bearer token. */
  url: string;
  /** The relay's Socket.IO base: `join` a job Id, hear `notification` `{Id, success, data}`. */
  relayUrl: string;
  pids: { worker: number; relay: number };
  /** SIGTERM, then SIGKILL after 5 s; idempotent. */
  stop(): Promise<void>;
}

async function waitHealthy(url: string, what: string): Promise<void> {
  for (let i = 0;; i++) {
    try {
      const response = await fetch(`${url}/health`);
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      if (i > 400) throw new Error(`Cannot start the seed's ${what}: no answer in 20 s`);
      await sleep(50);
    }
  }
}

function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone meanwhile
    }
  }, 5_000);
  return child.status.then(() => clearTimeout(timer));
}

/**
 * Starts the seed's worker and relay from its copy `dir` against any Redis and image API (e.g. a fake
 * with a rate limit), for drivers other than run.sh's; the worker verifies tokens with `secret`.
 */
export async function startSeedStack(
  dir: string,
  { redisUrl, grokApi, secret, concurrency }: {
    redisUrl: string;
    grokApi: string;
    secret: string;
    concurrency: number;
  },
): Promise<SeedStack> {
  const relayPort = freePort(), workerPort = freePort();
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    REDIS_URL: redisUrl,
    GROK_API: grokApi,
    XAI_API_KEY: "xai-fake-key",
    JWT_SECRET: secret,
    PORT_MESSAGES_USERS: String(relayPort),
    CONCURRENCY: String(concurrency),
  };
  const spawn = (script: string, extra: Record<string, string> = {}) =>
    new Deno.Command("node", {
      args: [script],
      cwd: dir,
      env: { ...env, ...extra },
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  const relay = spawn("notification-server.js");
  let worker: Deno.ChildProcess | undefined;
  const stop = async () => {
    await Promise.all([relay, worker].map((c) => c && stopChild(c)));
  };
  let stopping: Promise<void> | undefined;
  try {
    const relayUrl = `http://127.0.0.1:${relayPort}`;
    await waitHealthy(relayUrl, "relay");
    worker = spawn("server.js", { PORT: String(workerPort) });
    const url = `http://127.0.0.1:${workerPort}`;
    await waitHealthy(url, "worker");
    return {
      url,
      relayUrl,
      pids: { worker: worker.pid, relay: relay.pid },
      stop: () => stopping ??= stop(),
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
