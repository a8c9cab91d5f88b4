/** The worker's waits: the retry backoff of a job, and broker writes retried while Redis is away. */
import type { Logger } from "@logtape/logtape";
import { isTransient } from "../lib/errors.ts";
import { MAX_RETRY_AFTER_MS } from "../lib/provider/grok.ts";

/**
 * Computes a retry delay with exponential backoff and full jitter; the provider's Retry-After, capped at
 * `retryAfterCapMs`, is a floor. Always a finite number of milliseconds.
 */
export function retryDelay(
  attempt: number,
  { baseMs, maxMs, retryAfterMs, retryAfterCapMs = MAX_RETRY_AFTER_MS, random = Math.random }: {
    baseMs: number;
    maxMs: number;
    retryAfterMs?: number;
    retryAfterCapMs?: number;
    random?: () => number;
  },
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  const jitter = Number.isFinite(ceiling) ? Math.floor(random() * ceiling) : 0;
  const floor = retryAfterMs !== undefined && retryAfterMs >= 0 // NaN and negatives are ignored
    ? Math.min(retryAfterMs, retryAfterCapMs)
    : 0;
  return Math.max(floor, jitter);
}

/**
 * Retries a broker write while its failure is transient (Redis restarting, a failover), so a finished
 * job's outcome is kept rather than recomputed. A permanent error is thrown at once; once `stopping`
 * aborts it gives up after a few more attempts, leaving the entry pending for a takeover.
 */
export async function persist<T>(
  write: () => Promise<T>,
  { what, log, stopping }: { what: string; log: Logger; stopping: AbortSignal },
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (!isTransient(error) || (stopping.aborted && attempt > 3)) throw error;
      const delay = Math.min(100 * 2 ** attempt, 2_000);
      log.warn("Cannot {what} yet, retrying in {delay} ms: {error}", {
        what,
        delay,
        error: String(error),
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
