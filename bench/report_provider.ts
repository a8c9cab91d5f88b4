/** Scenario 10's figures (from the driver's traces and the fake's counters), rows and table. */
import { type FakeXai, maxInWindow } from "../tests/support/fake_xai.ts";
import type { Row } from "./report.ts";
import { percentile } from "./stats.ts";

/** One provider-limited workload. */
export interface Workload {
  name: string;
  jobs: number;
  /** The fake's requests per second (burst the same), and our GROK_MAX_RPS. */
  limit: number;
  /** The fake's delay of every accepted call. */
  latencyMs: number;
}

/** One job as the driver saw it (performance.now() times). */
export interface JobTrace {
  /** 0 is the heavy owner; the others are light. */
  owner: number;
  /** Before its submit. */
  t0: number;
  /** When its terminal notification (or its submit error) arrived. */
  end?: number;
  ok?: boolean;
  error?: string;
}

/** What one side measured on one workload. */
export interface Figures {
  /** Failed, canceled, refused at submit, or without an end by the deadline. */
  failedJobs: number;
  succeeded: number;
  lost: number;
  accepted: number;
  rateLimited: number;
  /** 429s ÷ accepted calls. */
  rateLimitedPerAccepted: number | null;
  /** 429s ÷ every call (the target's measure: under 2%). */
  rateLimitedShare: number | null;
  /** Accepted calls/s from the first accepted call to the last, ÷ the limit. */
  utilization: number | null;
  /** Most calls accepted in any sliding second (the bucket allows limit + burst). */
  maxAcceptedIn1s: number;
  /** Light owners' jobs that did not succeed (their latencies count successes only). */
  lightFailed: number;
  lightP50Ms: number | null;
  lightP95Ms: number | null;
  /** From the start to the heavy owner's last job's end. */
  heavyDoneMs: number | null;
  /** From the start to the last end. */
  wallMs: number | null;
  firstErrors: string[];
}

/** One side on one workload. */
export interface Run {
  side: "ours" | "seed";
  workload: Workload;
  figures: Figures;
  deadlineMs: number;
}

function round(value: number | null, digits = 0): number | null {
  if (value === null || !Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Reads one run's figures. */
export function figures(
  side: Run["side"],
  workload: Workload,
  { traces, start, submitErrors, fake, deadlineMs }: {
    traces: JobTrace[];
    start: number;
    submitErrors: string[];
    fake: Pick<FakeXai, "accepted" | "rateLimited" | "acceptedAt">;
    deadlineMs: number;
  },
): Run {
  const ended = traces.filter((t) => t.end !== undefined);
  const succeeded = ended.filter((t) => t.ok).length;
  const lost = workload.jobs - ended.length;
  const light = ended.filter((t) => t.ok && t.owner > 0).map((t) => t.end! - t.t0)
    .sort((a, b) => a - b);
  const heavyEnds = ended.filter((t) => t.owner === 0).map((t) => t.end! - start);
  const { accepted, rateLimited } = fake;
  const times = [...fake.acceptedAt].sort((a, b) => a - b);
  const spanS = times.length > 1 ? (times.at(-1)! - times[0]) / 1000 : 0;
  const errors = new Set([...submitErrors, ...ended.flatMap((t) => t.error ? [t.error] : [])]);
  return {
    side,
    workload,
    deadlineMs,
    figures: {
      failedJobs: workload.jobs - succeeded,
      succeeded,
      lost,
      accepted,
      rateLimited,
      rateLimitedPerAccepted: accepted ? round(rateLimited / accepted, 4) : null,
      rateLimitedShare: accepted + rateLimited
        ? round(rateLimited / (accepted + rateLimited), 4)
        : null,
      utilization: spanS > 0 ? round((times.length - 1) / spanS / workload.limit, 4) : null,
      maxAcceptedIn1s: maxInWindow(times, 1_000),
      lightFailed: traces.filter((t) => t.owner > 0 && !t.ok).length,
      lightP50Ms: round(percentile(light, 50)),
      lightP95Ms: round(percentile(light, 95)),
      heavyDoneMs: heavyEnds.length ? round(Math.max(...heavyEnds)) : null,
      wallMs: ended.length ? round(Math.max(...ended.map((t) => t.end! - start))) : null,
      firstErrors: [...errors].slice(0, 5),
    },
  };
}

const pct = (v: number | null) => v === null ? "n/a" : `${(v * 100).toFixed(1)}%`;
const secs = (ms: number | null) => ms === null ? "n/a" : `${(ms / 1000).toFixed(2)} s`;

/** Our figures against issue 17's targets, each with the seed's figure beside it. */
export function providerRows(scenario: string, runs: Run[]): Row[] {
  const rows: Row[] = [];
  for (const ours of runs.filter((r) => r.side === "ours")) {
    const seed = runs.find((r) => r.side === "seed" && r.workload === ours.workload)?.figures;
    const f = ours.figures;
    const row = (figure: string, value: number | null, unit: string, seedText: string) => {
      const ratio = seed ? `seed ${seedText}` : "";
      rows.push({ scenario, figure: `${ours.workload.name}: ${figure}`, value, unit, ratio });
    };
    const target = (text: string, pass: boolean) =>
      Object.assign(rows.at(-1)!, { target: text, pass });
    row("failed jobs", f.failedJobs, "", `${seed?.failedJobs}`);
    target("0", f.failedJobs === 0);
    const perAccepted = f.rateLimitedPerAccepted;
    row(
      "429s per accepted call",
      perAccepted === null ? null : perAccepted * 100,
      "%",
      pct(seed?.rateLimitedPerAccepted ?? null),
    );
    target("< 2% of calls", f.rateLimitedShare !== null && f.rateLimitedShare < 0.02);
    row(
      "provider utilization",
      f.utilization === null ? null : f.utilization * 100,
      "%",
      pct(seed?.utilization ?? null),
    );
    target("≥ 95%", (f.utilization ?? 0) >= 0.95);
    row("light owners' p50", f.lightP50Ms, "ms", secs(seed?.lightP50Ms ?? null));
    row("light owners' p95", f.lightP95Ms, "ms", secs(seed?.lightP95Ms ?? null));
    target("≤ 3,000 ms", f.lightP95Ms !== null && f.lightP95Ms <= 3_000);
  }
  return rows;
}

/** Every run side by side, as Markdown. */
export function providerTable(runs: Run[]): string {
  const lines = [
    "Provider-limited (scenario 10): 80% of the jobs from one owner at t = 0, light owners one job " +
    "each every ~1-2 s; the fake takes `limit` calls/s (token bucket, burst = limit), 400 ms each. " +
    "Ours: 2 processes × WORKER_CONCURRENCY 16, GROK_MAX_RPS = limit. Seed: server.js, Bull " +
    "concurrency 32 (the same slots), no retries. Utilization: accepted calls/s from the first " +
    "accepted call to the last ÷ the limit (a side that fails its backlog leaves the provider " +
    "idle). Light p50/p95: submit to success of the light owners' succeeded jobs.",
    "",
    "| workload | side | failed jobs | 429s / accepted | 429s / calls | utilization | " +
    "max accepted in 1 s | light failed | light p50 | light p95 | heavy owner done | wall |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const { side, workload, figures: f } of runs) {
    const cells = [
      workload.name,
      side,
      `${f.failedJobs} of ${workload.jobs}${f.lost ? ` (${f.lost} lost)` : ""}`,
      pct(f.rateLimitedPerAccepted),
      pct(f.rateLimitedShare),
      pct(f.utilization),
      `${f.maxAcceptedIn1s} (limit ${workload.limit})`,
      String(f.lightFailed),
      secs(f.lightP50Ms),
      secs(f.lightP95Ms),
      secs(f.heavyDoneMs),
      secs(f.wallMs),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}
