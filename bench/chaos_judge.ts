/** The chaos run's verdict: every accepted job's events, attempts and provider calls, read from Redis. */
import { redisCommand } from "../tests/support/redis_server.ts";

/** What the judge found over all accepted jobs. */
export interface Verdict {
  succeeded: number;
  failed: number;
  /** Jobs another worker took over (more attempts than `started` events). */
  takenOver: number;
  /** Worst time from a taken-over job's last `started` event to its terminal event, or null. */
  worstTakeoverMs: number | null;
  /** Provider calls beyond the job's recorded attempts, summed over all jobs. */
  duplicatedCalls: number;
  /** Jobs with more provider calls than recorded attempts. */
  duplicatedCallIds: string[];
  lostIds: string[];
  duplicatedIds: string[];
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** Reads each job hash's status, whatever it is (empty when the key is gone). */
export const STATUSES = `local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGET', k, 'status') or '' end
return out`;

const DETAILS = `local out = {}
for i, k in ipairs(KEYS) do
  local f = redis.call('HMGET', k, 'status', 'seq', 'attempts')
  local row = {f[1] or '', f[3] or '0'}
  for s = 1, tonumber(f[2] or '0') or 0 do row[#row + 1] = redis.call('HGET', k, 'e' .. s) or '' end
  out[i] = row
end
return out`;

/** Runs a read-only script over the job hashes of `ids`, 250 keys at a time. */
export async function evalOver(
  port: number,
  prefix: string,
  script: string,
  ids: string[],
): Promise<unknown[]> {
  const out: unknown[] = [];
  for (let i = 0; i < ids.length; i += 250) {
    const keys = ids.slice(i, i + 250).map((id) => `${prefix}job:${id}`);
    out.push(...await redisCommand(port, ["EVAL", script, String(keys.length), ...keys]) as []);
  }
  return out;
}

/** Reads the feed: for each job, the seqs of the terminal events it points at. */
async function feedTerminals(port: number, prefix: string): Promise<Map<string, Set<string>>> {
  const seqs = new Map<string, Set<string>>();
  for (let from = "-";;) {
    const range = ["XRANGE", `${prefix}events`, from, "+", "COUNT", "1000"];
    const entries = await redisCommand(port, range) as [string, string[]][];
    for (const [, fields] of entries) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
      if (!TERMINAL.has(JSON.parse(f.n ?? "{}").type)) continue;
      seqs.set(f.j, (seqs.get(f.j) ?? new Set()).add(f.e));
    }
    if (entries.length < 1000) return seqs;
    from = `(${entries.at(-1)![0]}`;
  }
}

/**
 * Checks every accepted job: exactly one terminal event, agreeing with its status and the feed; and
 * no more provider calls (`callsOf`) than its recorded attempts.
 */
export async function judge(
  port: number,
  prefix: string,
  ids: string[],
  callsOf: (id: string) => number,
): Promise<Verdict> {
  const rows = await evalOver(port, prefix, DETAILS, ids) as string[][];
  const feed = await feedTerminals(port, prefix);
  const v: Verdict = {
    succeeded: 0,
    failed: 0,
    takenOver: 0,
    worstTakeoverMs: null,
    duplicatedCalls: 0,
    duplicatedCallIds: [],
    lostIds: [],
    duplicatedIds: [],
  };
  rows.forEach(([status, attempts, ...raw], i) => {
    const id = ids[i];
    const events = raw.map((json) => JSON.parse(json || "{}") as { type?: string; at?: string });
    const terminals = events.filter((e) => TERMINAL.has(e.type ?? ""));
    if (status === "succeeded") v.succeeded++;
    if (status === "failed") v.failed++;
    if (!status || terminals.length === 0) v.lostIds.push(id);
    else if (terminals.length > 1 || terminals[0].type !== status) v.duplicatedIds.push(id);
    else if ((feed.get(id)?.size ?? 0) > 1) v.duplicatedIds.push(id);
    const extra = callsOf(id) - Number(attempts);
    if (extra > 0) {
      v.duplicatedCalls += extra;
      v.duplicatedCallIds.push(id);
    }
    const starts = events.filter((e) => e.type === "started");
    if (Number(attempts) > starts.length && starts.length > 0 && terminals.length > 0) {
      v.takenOver++;
      const ms = Date.parse(terminals[0].at!) - Date.parse(starts.at(-1)!.at!);
      v.worstTakeoverMs = Math.max(v.worstTakeoverMs ?? 0, ms);
    }
  });
  return v;
}
