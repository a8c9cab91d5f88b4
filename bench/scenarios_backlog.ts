/**
 * Scenario 9: a backlog of 20 KB JPEG jobs from 32 owners, delivered over WebSockets, on our service and
 * on the seed's own stack (run.sh) at WORKER_CONCURRENCY 8 and 32, with Redis commands and CPU per job.
 */
import type { BacklogConfig, BacklogStats } from "./driver_backlog.ts";
import { newestProfile, summarizeProfile } from "./profile.ts";
import { PROMPT, serviceEnv } from "./processes.ts";
import { redisDelta, redisSnapshot } from "./redis_info.ts";
import type { Bench } from "./report.ts";
import {
  backlogRows,
  type BacklogRun,
  type OurBacklog,
  profileTables,
  type ResponseFormat,
  sideBySide,
} from "./report_backlog.ts";
import { startService } from "../tests/support/service.ts";
import { ensureSeedRef, runSeed, type SeedFake, startSeedFake } from "./seed_ref.ts";
import { cpuMs, machineCpuMs } from "./stats.ts";

const SCENARIO = "9. Backlog vs seed";
const DRIVER = new URL("./driver_backlog.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;
const OWNERS = 32;
const CONCURRENCIES = [8, 32];
/** `url` first: the seed downloads its images, so that is the like-for-like comparison. */
const FORMATS: ResponseFormat[] = ["url", "b64_json"];

async function runDriver(config: BacklogConfig): Promise<BacklogStats> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", DRIVER, JSON.stringify(config)],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || !text) {
    const stderr = new TextDecoder().decode(output.stderr).slice(-800);
    throw new Error(`Cannot run the backlog driver: ${stderr}`);
  }
  return JSON.parse(text.split("\n").at(-1)!);
}

/** Runs one backlog on a fresh service process; with `profileDir`, under `--cpu-prof`. */
export async function ourBacklog(
  bench: Bench,
  fake: SeedFake,
  concurrency: number,
  { jobs, format, profileDir, env: extra = {} }: {
    jobs: number;
    format: ResponseFormat;
    profileDir?: string;
    /** More environment (an image store, another REDIS_PREFIX). */
    env?: Record<string, string>;
  },
): Promise<OurBacklog> {
  const prefix = `bench-backlog-${concurrency}-${format}-${profileDir ? "prof" : "run"}:`;
  const env = serviceEnv(bench.redis, fake, {
    REDIS_PREFIX: prefix,
    WORKER_CONCURRENCY: String(concurrency),
    GROK_RESPONSE_FORMAT: format,
    ...extra,
  });
  const flags = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  const service = await startService(env, { denoFlags: flags });
  try {
    const redisBefore = await redisSnapshot(bench.redis.port);
    const pids = { service: service.pid, redis: bench.redis.pid, fake: fake.pid };
    const read = () => ({
      ...Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid) ?? 0])),
      machine: machineCpuMs(),
    });
    const cpuBefore: Record<string, number> = read();
    const stats = await runDriver({
      url: service.url,
      tokens: bench.tokens.slice(0, OWNERS),
      prompt: PROMPT,
      jobs,
      lanesPerOwner: 2,
      expectedUrl: fake.expectedUrl,
      timeoutMs: 120_000,
      graceMs: 200,
    });
    const cpuAfter: Record<string, number> = read();
    const cpu: Record<string, number> = { driver: stats.driverCpuMs };
    for (const k of Object.keys(cpuAfter)) cpu[k] = Math.round(cpuAfter[k] - cpuBefore[k]);
    const redis = redisDelta(redisBefore, await redisSnapshot(bench.redis.port));
    const rssKib = rssKibOf(service.pid);
    return { format, stats, serviceCpuMs: cpu.service, cpuMs: cpu, redis, rssKib };
  } finally {
    await service.stop();
  }
}

function rssKibOf(pid: number): number | null {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) || null;
}

/** The fastest of several tries, per side: each of our formats and the seed. */
function bestOf(tries: BacklogRun[]): BacklogRun {
  const fastest = <T>(list: T[], rate: (t: T) => number) =>
    list.reduce((a, b) => (rate(b) > rate(a) ? b : a));
  return {
    concurrency: tries[0].concurrency,
    ours: tries[0].ours.map((_, i) =>
      fastest(tries.map((t) => t.ours[i]), (o) => o.stats.jobsPerSec)
    ),
    seed: fastest(tries.map((t) => t.seed), (s) => s.report.jobs_per_s),
  };
}

/** Scenario 9: our service and the seed's stack, same backlog, both concurrencies, in the same run. */
export async function backlogScenario(bench: Bench): Promise<void> {
  const jobs = bench.quick ? 500 : 2_000;
  const dir = await ensureSeedRef();
  const fake = await startSeedFake(dir);
  const runs: BacklogRun[] = [];
  const raw: Record<string, unknown> = { jobs };
  bench.raw.backlog = raw;
  try {
    for (const concurrency of CONCURRENCIES) {
      // Interleaved repeats; the best of each side is kept (other load on the machine only slows).
      const tries: BacklogRun[] = [];
      for (let r = 0; r < (bench.repeat ?? 1); r++) {
        const ours: OurBacklog[] = [];
        for (const format of FORMATS) {
          const run = await ourBacklog(bench, fake, concurrency, { jobs, format });
          bench.log(`  ours c${concurrency} ${format}: ${JSON.stringify(run)}`);
          ours.push(run);
        }
        const seed = await runSeed(dir, { jobs, concurrency, timeoutS: 120 });
        bench.log(`  seed c${concurrency}: ${JSON.stringify(seed)}`);
        tries.push({ concurrency, ours, seed });
      }
      const best = bestOf(tries);
      runs.push(best);
      raw[`c${concurrency}`] = { best, tries };
      bench.rows.push(...backlogRows(SCENARIO, best));
    }
    bench.tables = [...(bench.tables ?? []), sideBySide(jobs, runs)];
    if (bench.profile) {
      const dir = await Deno.makeTempDir({ prefix: "imagejobs_cpuprof_" });
      const run = await ourBacklog(bench, fake, 32, { jobs, format: "url", profileDir: dir });
      const path = await newestProfile(dir);
      const summary = summarizeProfile(path);
      bench.log(`  profile ${path}: ${run.stats.jobsPerSec} jobs/s under the profiler`);
      bench.tables.push(profileTables(summary, { jobs, concurrency: 32, path }));
      raw.profile = { path, stats: run.stats, cpuMs: run.cpuMs, summary };
    }
  } finally {
    await fake.stop();
  }
}
