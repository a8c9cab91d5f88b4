/** The benchmark's shared context, its result rows, and the Markdown table. */
import type { RedisServer } from "../tests/support/redis_server.ts";

/** The machine's limits, measured at the start of the run. */
export interface Limits {
  helloRps: number;
  helloP50Ms: number;
  helloP99Ms: number;
  xaddOps: number;
  /** redis-benchmark running the service's own submit script (EVALSHA): Redis's ceiling for submits. */
  submitScriptOps: number;
}

/** One line of the table. */
export interface Row {
  scenario: string;
  figure: string;
  value: number | null;
  unit: string;
  target?: string;
  /** The value as a ratio to a limit (or to the peer), as text. */
  ratio?: string;
  /** Set only for figures with a target. */
  pass?: boolean;
}

/** What every scenario gets: settings, shared processes, the limits and where to put results. */
export interface Bench {
  quick: boolean;
  redis: RedisServer;
  /** Bearer JWTs of 64 owners (`bench-0` … `bench-63`). */
  tokens: string[];
  limits: Limits;
  rows: Row[];
  raw: Record<string, unknown>;
  log(line: string): void;
  /** Extra Markdown tables printed after the main one (e.g. the backlog side by side). */
  tables?: string[];
  /** Also run the service under `--cpu-prof` and sum the profile (`--profile`). */
  profile?: boolean;
  /** Tries per side in the backlog scenario, the best kept (`--repeat=N`, default 1). */
  repeat?: number;
}

/** Throughput as a share of bare Deno.serve requests/s (and of XADD ops/s when asked). */
export function ofLimits(value: number | null, limits: Limits, xadd = false): string {
  if (value === null) return "";
  const pct = (n: number) => `${(n * 100).toPrecision(2)}%`;
  const parts = [`${pct(value / limits.helloRps)} of Deno.serve`];
  if (xadd) parts.push(`${pct(value / limits.xaddOps)} of XADD`);
  return parts.join(", ");
}

/** A latency as a multiple of bare Deno.serve's at the same percentile. */
export function ofHelloLatency(ms: number | null, limits: Limits, p: 50 | 99): string {
  if (ms === null) return "";
  const base = p === 50 ? limits.helloP50Ms : limits.helloP99Ms;
  return `${(ms / base).toPrecision(3)}× Deno.serve p${p}`;
}

function format(value: number | null, unit: string): string {
  if (value === null || !Number.isFinite(value)) return "n/a";
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  const text = value.toLocaleString("en-US", { maximumFractionDigits: digits });
  return unit ? `${text} ${unit}` : text;
}

/** The rows as a Markdown table. */
export function markdown(rows: Row[]): string {
  const lines = [
    "| scenario | figure | value | target | ratio | pass |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const pass = r.pass === undefined ? "" : r.pass ? "pass" : "**fail**";
    const cells = [r.scenario, r.figure, format(r.value, r.unit), r.target ?? "", r.ratio ?? ""];
    lines.push(`| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} | ${pass} |`);
  }
  return lines.join("\n");
}

/** Writes `bench/results/<timestamp>.json` and, after a full run of everything, `latest.md`; returns the JSON path. */
export async function save(
  bench: Bench,
  meta: Record<string, unknown>,
  table: string,
): Promise<string> {
  const dir = new URL("./results/", import.meta.url).pathname;
  await Deno.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replaceAll(":", "-");
  const path = `${dir}${stamp}.json`;
  const body = { ...meta, limits: bench.limits, rows: bench.rows, raw: bench.raw };
  await Deno.writeTextFile(path, JSON.stringify(body, null, 2) + "\n");
  if (meta.mode !== "full") return path;
  const header = `# Latest benchmark (${meta.mode}, ${meta.startedAt})\n\n` +
    `Machine: ${meta.machine}. Run: \`deno task bench\`` +
    ` in ${meta.durationSec} s.\n\n`;
  await Deno.writeTextFile(`${dir}latest.md`, `${header}${table}\n\n${meta.notes}\n`);
  return path;
}
