/**
 * Scenario 12 (`--store`): scenario 9's backlog (20 KB JPEGs, 32 owners, WebSockets) at concurrency 32,
 * with the images in Redis and then in an S3-compatible store (s3rver on 127.0.0.1, behind the tests'
 * counting proxy): Redis memory per job, Redis network per job, and the store's requests and bytes per job.
 */
import { redisCommand } from "../tests/support/redis_server.ts";
import { S3_KEY, startS3 } from "../tests/support/s3_server.ts";
import type { Bench, Row } from "./report.ts";
import { ourBacklog } from "./scenarios_backlog.ts";
import { ensureSeedRef, startSeedFake } from "./seed_ref.ts";
import { cpuMs } from "./stats.ts";

const SCENARIO = "12. Images outside Redis";
const CONCURRENCY = 32;

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** The mean MEMORY USAGE of up to `sample` job hashes under `prefix`, in bytes. */
async function jobHashBytes(port: number, prefix: string, sample = 50): Promise<number> {
  const reply = await redisCommand(port, ["SCAN", "0", "MATCH", `${prefix}job:*`, "COUNT", "5000"]);
  const keys = ((reply as unknown[])[1] as unknown[]).map(String).slice(0, sample);
  let total = 0;
  for (const key of keys) {
    total += Number(await redisCommand(port, ["MEMORY", "USAGE", key, "SAMPLES", "0"]));
  }
  return keys.length ? total / keys.length : 0;
}

/** Scenario 12: the same backlog without and with the image store. */
export async function storeScenario(bench: Bench): Promise<void> {
  const jobs = bench.quick ? 500 : 2_000;
  const fake = await startSeedFake(await ensureSeedRef());
  const s3 = await startS3("bench-images");
  const raw: Record<string, unknown> = { jobs };
  bench.raw.store = raw;
  try {
    for (const store of [false, true]) {
      const prefix = `bench-store-${store ? "s3" : "redis"}:`;
      const env: Record<string, string> = { REDIS_PREFIX: prefix };
      if (store) {
        Object.assign(env, {
          IMAGE_STORE_URL: `s3://${s3.bucket}/bench`,
          S3_ENDPOINT: s3.url,
          AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId,
          AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
        });
      }
      const before = s3.requests.length;
      // s3rver's CPU, and this process's (the counting proxy in front of it, mostly).
      const cpu = () => [cpuMs(s3.pid) ?? 0, cpuMs(Deno.pid) ?? 0];
      const cpuBefore = cpu();
      const run = await ourBacklog(bench, fake, CONCURRENCY, { jobs, format: "b64_json", env });
      const [s3rverMs, proxyMs] = cpu().map((ms, i) => ms - cpuBefore[i]);
      const requests = s3.requests.slice(before);
      const hash = await jobHashBytes(bench.redis.port, prefix);
      const byMethod: Record<string, number> = {};
      for (const r of requests) byMethod[r.method] = (byMethod[r.method] ?? 0) + 1;
      const storeBytes = requests.reduce((n, r) => n + r.bytesIn + r.bytesOut, 0);
      const figures = {
        jobsPerSec: run.stats.jobsPerSec,
        lost: run.stats.lost,
        failed: run.stats.failed,
        imageMismatch: run.stats.imageMismatch,
        serviceCpuMsPerJob: round(run.serviceCpuMs / jobs, 2),
        redisCommandsPerJob: round(run.redis.commands / jobs, 1),
        redisNetKibPerJob: round(
          (run.redis.netInputBytes + run.redis.netOutputBytes) / jobs / 1024,
        ),
        redisMemoryKibPerJob: round(run.redis.usedMemoryBytes / jobs / 1024),
        jobHashBytes: Math.round(hash),
        storeRequestsPerJob: round(requests.length / jobs, 2),
        storeRequestsByMethod: byMethod,
        storeKibPerJob: round(storeBytes / jobs / 1024),
        s3rverCpuMsPerJob: round(s3rverMs / jobs, 2),
        proxyCpuMsPerJob: round(proxyMs / jobs, 2),
      };
      bench.log(`  ${store ? "store" : "redis"}: ${JSON.stringify(figures)}`);
      raw[store ? "store" : "redis"] = { figures, run };
      bench.rows.push(...rows(store ? "S3 store" : "in Redis", figures));
    }
  } finally {
    await Promise.allSettled([fake.stop(), s3.stop()]);
  }
}

function rows(where: string, f: Record<string, number | unknown>): Row[] {
  const row = (figure: string, value: unknown, unit: string): Row => ({
    scenario: SCENARIO,
    figure: `images ${where}: ${figure}`,
    value: typeof value === "number" ? value : null,
    unit,
  });
  return [
    row("completed jobs/s (c32, b64_json)", f.jobsPerSec, "jobs/s"),
    row(
      "lost + failed + image mismatches",
      Number(f.lost) + Number(f.failed) + Number(f.imageMismatch),
      "jobs",
    ),
    row("service CPU per job", f.serviceCpuMsPerJob, "ms"),
    row("Redis commands per job", f.redisCommandsPerJob, "cmds"),
    row("Redis network per job (in + out)", f.redisNetKibPerJob, "KiB"),
    row("Redis used_memory per ended job", f.redisMemoryKibPerJob, "KiB"),
    row("MEMORY USAGE of a job hash", f.jobHashBytes, "bytes"),
    row("store requests per job", f.storeRequestsPerJob, "requests"),
    row("store network per job (in + out)", f.storeKibPerJob, "KiB"),
    row("s3rver CPU per job (node, on the same cores)", f.s3rverCpuMsPerJob, "ms"),
  ];
}
