/** Per-owner submission limits: fixed one-minute windows, shared through Redis or kept in memory. */
import type { RedisClient } from "./redis/types.ts";

/** The verdict for one hit: allowed, or how long to wait. */
export interface RateVerdict {
  allowed: boolean;
  retryAfterSec: number;
}

/** Counts submissions per owner and says when one is over the limit. */
export interface RateLimiter {
  hit(owner: string): Promise<RateVerdict>;
}

const WINDOW_MS = 60_000;

function windowOf(now: number): { index: number; retryAfterSec: number } {
  const index = Math.floor(now / WINDOW_MS);
  return { index, retryAfterSec: Math.ceil(((index + 1) * WINDOW_MS - now) / 1000) };
}

/** A limiter that never refuses (a limit of 0 turns limiting off). */
export function unlimited(): RateLimiter {
  return { hit: () => Promise.resolve({ allowed: true, retryAfterSec: 0 }) };
}

/** A limiter for one process (embedded mode). */
export function createMemoryRateLimiter(
  { limit, now = Date.now }: { limit: number; now?: () => number },
): RateLimiter {
  if (limit <= 0) return unlimited();
  const counts = new Map<string, { index: number; count: number }>();
  return {
    hit(owner) {
      const { index, retryAfterSec } = windowOf(now());
      if (counts.size > 100_000) {
        for (const [key, value] of counts) if (value.index !== index) counts.delete(key);
      }
      const slot = counts.get(owner);
      const count = slot?.index === index ? slot.count + 1 : 1;
      counts.set(owner, { index, count });
      return Promise.resolve({ allowed: count <= limit, retryAfterSec });
    },
  };
}

/** A limiter shared by every process on one Redis: INCR and EXPIRE in one round trip. */
export function createRedisRateLimiter(
  { client, prefix, limit, now = Date.now }: {
    client: RedisClient;
    prefix: string;
    limit: number;
    now?: () => number;
  },
): RateLimiter {
  if (limit <= 0) return unlimited();
  return {
    async hit(owner) {
      const { index, retryAfterSec } = windowOf(now());
      const key = `${prefix}rate:${index}:${owner}`;
      const [count] = await client.pipeline([["INCR", key], ["EXPIRE", key, "61"]]);
      if (count instanceof Error) throw count;
      return { allowed: Number(count) <= limit, retryAfterSec };
    },
  };
}
