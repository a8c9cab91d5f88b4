/** Scenario 9's figures: rows for the main table, the side-by-side table against the seed, the profile tables. */
import type { ProfileSummary } from "./profile.ts";
import type { Row } from "./report.ts";
import type { BacklogStats } from "./driver_backlog.ts";
import type { RedisDelta } from "./redis_info.ts";
import type { SeedResult } from "./seed_ref.ts";

/** How our service gets the image: by URL and download (as the seed does) or inline (our default). */
export type ResponseFormat = "url" | "b64_json";

/** Our run at one concurrency: the driver's stats, CPU ms per process and the Redis deltas. */
export interface OurBacklog {
  format: ResponseFormat;
  stats: BacklogStats;
  serviceCpuMs: number;
  /** CPU ms over the run of the service, redis-server, the fake, the driver and the whole machine. */
  cpuMs: Record<string, number>;
  redis: RedisDelta;
  rssKib: number | null;
}

/** One concurrency: our runs (one per response format) and the seed's. */
export interface BacklogRun {
  concurrency: number;
  ours: OurBacklog[];
  seed: SeedResult;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const perJob = (ms: number | undefined, jobs: number) => round((ms ?? 0) / jobs, 2);

/** The seed's own CPU (its worker and its relay), without Redis, the fake and the driver. */
export function seedCpuMs(seed: SeedResult): number {
  return (seed.cpuMs.worker ?? 0) + (seed.cpuMs.relay ?? 0);
}

/** CPU ms of everything else on the machine during a run: a sign that the figure was disturbed. */
export function otherCpuMs(cpu: Record<string, number>): number {
  const mine = Object.entries(cpu).reduce((n, [k, v]) => (k === "machine" ? n : n + v), 0);
  return Math.max(0, Math.round((cpu.machine ?? 0) - mine));
}

function clean(o: OurBacklog["stats"]): boolean {
  return o.lost === 0 && o.duplicates === 0 && o.imageMismatch === 0 && o.failed === 0;
}

/** The side-by-side Markdown table: ours (per response format) against the seed, per concurrency. */
export function sideBySide(jobs: number, runs: BacklogRun[]): string {
  const lines = [
    `Backlog: ${jobs} jobs from 32 owners, 20,480-byte JPEG, terminal notifications over WebSocket ` +
    "(ours, one socket per owner) or Socket.IO (seed), every image byte-checked. CPU ms/job: " +
    "ours = the service process; seed = worker + relay; machine = every process on both cores; " +
    "other = CPU of processes outside the run (other load on the machine), in ms over the run.",
    "",
    "| WORKER_CONCURRENCY | ours (image by) | ours jobs/s | seed jobs/s | ratio | ours p50 / p99 ms " +
    "| seed p50 / p99 ms | lost / dup (ours; seed) | Redis cmds/job (ours; seed) " +
    "| CPU ms/job (ours; seed) | machine CPU ms/job (ours; seed) | other ms (ours; seed) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const { concurrency, ours, seed } of runs) {
    const s = seed.report;
    const seedCmds = seed.redis ? round(seed.redis.commands / s.jobs) : "n/a";
    for (const run of ours) {
      const o = run.stats;
      lines.push(
        `| ${concurrency} | ${run.format} | ${o.jobsPerSec} | ${s.jobs_per_s} | ` +
          `**${round(o.jobsPerSec / s.jobs_per_s, 2)}×** | ` +
          `${o.latencyMs.p50} / ${o.latencyMs.p99} | ${s.latency_ms.p50} / ${s.latency_ms.p99} | ` +
          `${o.lost} / ${o.duplicates}; ${s.lost} / ${s.duplicates} | ` +
          `${round(run.redis.commands / o.jobs)}; ${seedCmds} | ` +
          `${perJob(run.serviceCpuMs, o.jobs)}; ${perJob(seedCpuMs(seed), s.jobs)} | ` +
          `${perJob(run.cpuMs.machine, o.jobs)}; ${perJob(seed.cpuMs.machine, s.jobs)} | ` +
          `${otherCpuMs(run.cpuMs)}; ${otherCpuMs(seed.cpuMs)} |`,
      );
    }
  }
  return lines.join("\n");
}

/** Rows of one concurrency for the main table. */
export function backlogRows(scenario: string, { concurrency, ours, seed }: BacklogRun): Row[] {
  const s = seed.report;
  const c = `WORKER_CONCURRENCY ${concurrency}`;
  const rows: Row[] = [
    { scenario, figure: `${c}: seed, jobs/s`, value: s.jobs_per_s, unit: "jobs/s" },
    {
      scenario,
      figure: `${c}: seed, p99`,
      value: s.latency_ms.p99,
      unit: "ms",
      ratio: `p50 ${s.latency_ms.p50} ms; lost ${s.lost}, duplicated ${s.duplicates}`,
    },
    {
      scenario,
      figure: `${c}: seed, CPU per job (worker + relay)`,
      value: seedCpuMs(seed) / s.jobs,
      unit: "ms",
      ratio: seed.redis ? `${round(seed.redis.commands / s.jobs)} Redis commands per job` : "",
    },
  ];
  for (const run of ours) {
    const o = run.stats;
    const label = `${c}: ours (${run.format})`;
    const ratio = o.jobsPerSec / s.jobs_per_s;
    const bytes = (run.redis.netInputBytes + run.redis.netOutputBytes) / o.jobs;
    rows.push(
      { scenario, figure: `${label}, jobs/s`, value: o.jobsPerSec, unit: "jobs/s" },
      {
        scenario,
        figure: `${label} ÷ seed, jobs/s`,
        value: ratio,
        unit: "×",
        target: "≥ 3×",
        ratio: "stretch 5×",
        pass: ratio >= 3 && clean(o),
      },
      {
        scenario,
        figure: `${label}, p99`,
        value: o.latencyMs.p99,
        unit: "ms",
        ratio: `p50 ${o.latencyMs.p50} ms`,
      },
      {
        scenario,
        figure: `${label}, lost + duplicated + image mismatches + failed`,
        value: o.lost + o.duplicates + o.imageMismatch + o.failed,
        unit: "",
        ratio: `${o.lost} / ${o.duplicates} / ${o.imageMismatch} / ${o.failed}`,
        pass: clean(o),
      },
      {
        scenario,
        figure: `${label}, Redis commands per job, incl. script internals`,
        value: run.redis.commands / o.jobs,
        unit: "",
        target: "≤ 12",
        pass: run.redis.commands / o.jobs <= 12,
      },
      {
        scenario,
        figure: `${label}, CPU per job (service process)`,
        value: run.serviceCpuMs / o.jobs,
        unit: "ms",
        ratio: `machine ${perJob(run.cpuMs.machine, o.jobs)} ms (seed ${
          perJob(seed.cpuMs.machine, s.jobs)
        } ms)`,
      },
      {
        scenario,
        figure: `${label}, Redis network bytes per job (in + out)`,
        value: bytes / 1024,
        unit: "KiB",
        ratio: `Redis memory kept per ended job ${
          round(run.redis.usedMemoryBytes / o.jobs / 1024)
        } KiB`,
      },
    );
  }
  return rows;
}

/** The profile as Markdown tables: by area, by owning frame, by function. */
export function profileTables(
  summary: ProfileSummary,
  { jobs, concurrency, path }: { jobs: number; concurrency: number; path: string },
): string {
  const table = (title: string, list: ProfileSummary["areas"]) =>
    [`| ${title} | ms | % of busy |`, "| --- | --- | --- |"]
      .concat(list.map((e) => `| ${e.name.replaceAll("|", "\\|")} | ${e.ms} | ${e.percent} |`))
      .join("\n");
  return [
    `CPU profile of the service's main thread, ${jobs} jobs at WORKER_CONCURRENCY ${concurrency} ` +
    `(image by url), from the first request on: ${summary.busyMs} ms busy of ${summary.totalMs} ms, ` +
    `${round(summary.busyMs / jobs, 2)} ms per job (${path}).`,
    table(
      "area (each sample charged to its nearest frame in our code or a package)",
      summary.areas,
    ),
    table("owning frame", summary.owners.slice(0, 20)),
    table("function (self time)", summary.functions.slice(0, 15)),
  ].join("\n\n");
}
