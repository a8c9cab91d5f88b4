/** Snapshots of a redis-server's INFO (command calls with script internals, network bytes, memory) and their deltas. */
import { redisCommand } from "../tests/support/redis_server.ts";

/** One INFO snapshot. */
export interface RedisSnapshot {
  calls: Record<string, number>;
  netInputBytes: number;
  netOutputBytes: number;
  usedMemory: number;
}

/** What happened between two snapshots. */
export interface RedisDelta {
  /** Calls per command (script internals included; INFO and MONITOR left out). */
  calls: Record<string, number>;
  commands: number;
  netInputBytes: number;
  netOutputBytes: number;
  usedMemoryBytes: number;
}

function field(text: string, name: string): number {
  return Number(new RegExp(`^${name}:(\\d+)`, "m").exec(text)?.[1] ?? 0);
}

/** Reads INFO (all sections, or only `section`, e.g. the small `commandstats`) from the server on `port`. */
export async function redisSnapshot(port: number, section = "all"): Promise<RedisSnapshot> {
  const text = String(await redisCommand(port, ["INFO", section]));
  const calls: Record<string, number> = {};
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls[match[1]] = Number(match[2]);
  }
  return {
    calls,
    netInputBytes: field(text, "total_net_input_bytes"),
    netOutputBytes: field(text, "total_net_output_bytes"),
    usedMemory: field(text, "used_memory"),
  };
}

/** The difference `after - before`. */
export function redisDelta(before: RedisSnapshot, after: RedisSnapshot): RedisDelta {
  const calls: Record<string, number> = {};
  for (const [name, n] of Object.entries(after.calls)) {
    const d = n - (before.calls[name] ?? 0);
    if (d > 0 && name !== "info" && name !== "monitor") calls[name] = d;
  }
  return {
    calls,
    commands: Object.values(calls).reduce((a, b) => a + b, 0),
    netInputBytes: after.netInputBytes - before.netInputBytes,
    netOutputBytes: after.netOutputBytes - before.netOutputBytes,
    usedMemoryBytes: after.usedMemory - before.usedMemory,
  };
}
