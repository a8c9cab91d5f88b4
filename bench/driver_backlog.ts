/**
 * The backlog driver, run as its own process (`deno run -A bench/driver_backlog.ts '<json>'`): opens one
 * WebSocket per owner, submits every job as fast as its lanes allow, subscribes right after each 202,
 * byte-checks every image against the fake's, and prints one JSON line of stats on stdout.
 */
import { cpuUsage } from "node:process";
import { type LatencySummary, sleep, summarize } from "./stats.ts";

/** Settings of one backlog run. */
export interface BacklogConfig {
  url: string;
  /** One Bearer JWT per owner; job i belongs to owner i % tokens.length. */
  tokens: string[];
  prompt: string;
  jobs: number;
  /** Submissions each owner keeps in flight at once. */
  lanesPerOwner: number;
  /** The fake's image URL: every succeeded job must carry exactly these bytes. */
  expectedUrl: string;
  timeoutMs: number;
  /** How long to keep listening after the last terminal notification, to catch duplicates. */
  graceMs: number;
}

/** What one backlog run measured. */
export interface BacklogStats {
  jobs: number;
  succeeded: number;
  failed: number;
  /** Jobs with no terminal notification by the timeout (or whose submit failed). */
  lost: number;
  /** Terminal notifications beyond the first for a job. */
  duplicates: number;
  imageMismatch: number;
  submitErrors: number;
  /** From the first submit to the last submit's 202, in ms. */
  submitMs: number;
  /** From the first submit to the last terminal notification, in ms. */
  wallMs: number;
  /** Succeeded jobs / wallMs (every job, when none is lost or failed). */
  jobsPerSec: number;
  /** Submit (before the POST) to terminal notification. */
  latencyMs: LatencySummary;
  /** Every notification received (queued, started, terminal). */
  notifications: number;
  imageBytes: number;
  driverCpuPercent: number;
  /** This driver's CPU time over the run (user + system), in ms. */
  driverCpuMs: number;
  firstErrors: string[];
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const PREFIX = "data:image/jpeg;base64,";

interface Job {
  t0: number;
  done: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function openSocket(
  url: string,
  token: string,
  onNotification: (n: Record<string, unknown>) => void,
): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/ws`);
  const ready = Promise.withResolvers<void>();
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
  ws.onerror = () => ready.reject(new Error("Cannot open the WebSocket"));
  ws.onclose = (e) => ready.reject(new Error(`Cannot authenticate the WebSocket: ${e.code}`));
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.type === "authenticated") ready.resolve();
    else if (message.type === "notification") onNotification(message.notification);
  };
  await ready.promise;
  return ws;
}

/** Runs one backlog and returns its stats. */
export async function runBacklog(config: BacklogConfig): Promise<BacklogStats> {
  const response = await fetch(config.expectedUrl);
  const expected = new Uint8Array(await response.arrayBuffer());
  if (!response.ok || expected.length === 0) throw new Error("Cannot fetch the expected image");

  const jobs = new Map<string, Job>();
  const latencies: number[] = [];
  const firstErrors = new Set<string>();
  let succeeded = 0, failed = 0, duplicates = 0, imageMismatch = 0, submitErrors = 0;
  let notifications = 0, terminals = 0, last = 0;
  const allDone = Promise.withResolvers<void>();
  const settle = () => {
    if (terminals + submitErrors >= config.jobs) allDone.resolve();
  };

  const onNotification = (n: Record<string, unknown>) => {
    notifications++;
    if (!TERMINAL.has(String(n.type))) return;
    const now = performance.now();
    const job = jobs.get(String(n.id));
    if (!job) return;
    if (job.done) {
      duplicates++;
      return;
    }
    job.done = true;
    terminals++;
    last = now;
    latencies.push(now - job.t0);
    const image = (n.data as { image?: unknown } | undefined)?.image;
    const ok = n.type === "succeeded" && typeof image === "string" &&
      image.startsWith(PREFIX) &&
      sameBytes(Uint8Array.fromBase64(image.slice(PREFIX.length)), expected);
    if (ok) succeeded++;
    else {
      failed++;
      if (n.type === "succeeded") imageMismatch++;
      else if (firstErrors.size < 5) firstErrors.add(`${n.type}: ${n.error}`);
    }
    settle();
  };

  const sockets = await Promise.all(
    config.tokens.map((token) => openSocket(config.url, token, onNotification)),
  );
  const owners = config.tokens.length;
  const cpuBefore = cpuUsage();
  const start = performance.now();
  let lastSubmit = start;

  async function lane(owner: number, next: { i: number }): Promise<void> {
    while (true) {
      const i = next.i;
      if (i >= config.jobs) return;
      next.i += owners;
      const t0 = performance.now();
      try {
        const res = await fetch(`${config.url}/v1/images`, {
          method: "POST",
          headers: {
            Authorization: `Bearer ${config.tokens[owner]}`,
            "Content-Type": "application/json",
          },
          body: JSON.stringify({ prompt: config.prompt }),
        });
        if (res.status !== 202) {
          await res.body?.cancel();
          throw new Error(`Cannot submit: status ${res.status}`);
        }
        const { id } = await res.json();
        jobs.set(id, { t0, done: false });
        lastSubmit = performance.now();
        sockets[owner].send(JSON.stringify({ type: "subscribe", id }));
      } catch (error) {
        submitErrors++;
        if (firstErrors.size < 5) firstErrors.add(String(error));
        settle();
      }
    }
  }

  const lanes = Array.from({ length: owners }, (_, owner) => {
    const next = { i: owner };
    return Array.from({ length: config.lanesPerOwner }, () => lane(owner, next));
  }).flat();
  await Promise.all(lanes);
  const submitMs = lastSubmit - start;
  await Promise.race([
    allDone.promise,
    sleep(Math.max(0, start + config.timeoutMs - performance.now())),
  ]);
  await sleep(config.graceMs);
  const cpu = cpuUsage(cpuBefore);
  const elapsed = performance.now() - start;
  for (const ws of sockets) ws.close();
  const wallMs = terminals === 0 ? elapsed : last - start;
  return {
    jobs: config.jobs,
    succeeded,
    failed,
    lost: config.jobs - terminals,
    duplicates,
    imageMismatch,
    submitErrors,
    submitMs: Math.round(submitMs),
    wallMs: Math.round(wallMs),
    jobsPerSec: Math.round((succeeded * 1000 / wallMs) * 10) / 10,
    latencyMs: summarize(latencies),
    notifications,
    imageBytes: expected.length,
    driverCpuPercent: Math.round((cpu.user + cpu.system) / 10 / elapsed),
    driverCpuMs: Math.round((cpu.user + cpu.system) / 1000),
    firstErrors: [...firstErrors],
  };
}

if (import.meta.main) {
  console.log(JSON.stringify(await runBacklog(JSON.parse(Deno.args[0]))));
  Deno.exit(0);
}
