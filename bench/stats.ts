/** Small numeric helpers the benchmark shares: latency summaries, process RSS and CPU time. */

/** Latency percentiles in milliseconds (null when there were no samples). */
export interface LatencySummary {
  count: number;
  p50: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

/** The nearest-rank percentile `p` (0..100) of ascending `sorted` values. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Summarizes latency samples (ms), rounded to 0.1 ms. */
export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (v: number | null) => v === null ? null : Math.round(v * 10) / 10;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? null),
  };
}

/** Resident set size of a process in KiB (VmRSS), or null when it is gone. */
export function rssKib(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

const TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process has used, in ms, or null when it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** Busy CPU time of the whole machine (all cores, from /proc/stat), in ms. */
export function machineCpuMs(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
  return ((user + nice + system + irq + softirq + steal) * 1000) / TICKS_PER_SECOND;
}

/**
 * Measures the CPU share (percent of one core) each pid used while `work` ran, plus `machine` (every
 * process on every core) and `orchestrator` (this process, which hosts the fake xAI).
 */
export async function withCpu<T>(
  given: Record<string, number>,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const pids = { ...given, orchestrator: Deno.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
  const machineBefore = machineCpuMs();
  const start = performance.now();
  const result = await work();
  const wall = performance.now() - start;
  const cpu: Record<string, number> = {
    machine: Math.round(((machineCpuMs() - machineBefore) / wall) * 100),
  };
  for (const [name, pid] of Object.entries(pids)) {
    const after = cpuMs(pid);
    const was = before[name];
    if (after !== null && was !== null) cpu[name] = Math.round(((after - was) / wall) * 100);
  }
  return { result, cpu };
}

/** Samples a pid's RSS every `everyMs` until stopped; `stop()` returns the samples in KiB. */
export function sampleRss(pid: number, everyMs = 250): { stop(): number[] } {
  const samples: number[] = [];
  const timer = setInterval(() => {
    const value = rssKib(pid);
    if (value !== null) samples.push(value);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return samples;
    },
  };
}

/** The median of numbers, or null for none. */
export function median(values: readonly number[]): number | null {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
