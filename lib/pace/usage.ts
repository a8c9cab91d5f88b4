/** What the provider charges, as jobs, notifications and GET /v1/usage show it. */
import { TICKS_PER_USD, type Usage, type UsageDay } from "../queue/types.ts";

/** A job's usage as notifications and the HTTP API show it. */
export function usageBody(usage: Usage): { images: number; cost_usd: number } {
  return { images: usage.images, cost_usd: ticksToUsd(usage.costUsdTicks) };
}

/** USD ticks as dollars, rounded to the micro-dollar. */
export function ticksToUsd(ticks: number): number {
  return Math.round(ticks / (TICKS_PER_USD / 1_000_000)) / 1_000_000;
}

/** The UTC day (`YYYY-MM-DD`) of an ISO time or epoch milliseconds. */
export function utcDay(at: string | number): string {
  return new Date(at).toISOString().slice(0, 10);
}

/** Whole seconds from `now` until the UTC day ends (at least 1). */
export function secondsToDayEnd(now: number): number {
  const end = new Date(now);
  end.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((end.getTime() - now) / 1000));
}

/** An owner's day with nothing in it. */
export function emptyDay(day: string): UsageDay {
  return {
    day,
    images: 0,
    costUsdTicks: 0,
    jobs: { succeeded: 0, failed: 0, canceled: 0 },
    reserved: 0,
  };
}
