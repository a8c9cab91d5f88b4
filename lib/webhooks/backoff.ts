/** When a failed webhook delivery is tried again, and when it is given up. */

/** Tuning of the webhook retry schedule. */
export interface WebhookBackoffOptions {
  /** The first retry's ceiling; the n-th failure waits between half and all of `baseMs * 2^(n-1)`. */
  baseMs?: number;
  /** The longest wait between two attempts. */
  maxMs?: number;
  /** Retries go on at least this long after the event. */
  giveUpAfterMs?: number;
  /** And at least this many attempts are made, however late they started. */
  minAttempts?: number;
  /** A number in [0, 1) (tests pass a fixed one). */
  random?: () => number;
}

/** The defaults: ~1 s, 2 s, 4 s … capped at 10 min, for an hour and at least 8 attempts. */
export const WEBHOOK_BACKOFF = {
  baseMs: 1_000,
  maxMs: 600_000,
  giveUpAfterMs: 3_600_000,
  minAttempts: 8,
} as const;

/**
 * The wait after the `failures`-th failed attempt (1 for the first), with equal jitter: half of the
 * capped exponential step is fixed, so retries never bunch up at zero, and half is random.
 */
export function webhookRetryDelay(failures: number, options: WebhookBackoffOptions = {}): number {
  const {
    baseMs = WEBHOOK_BACKOFF.baseMs,
    maxMs = WEBHOOK_BACKOFF.maxMs,
    random = Math.random,
  } = options;
  if (!Number.isInteger(failures) || failures < 1) throw new RangeError("failures must be >= 1");
  if (!(baseMs > 0) || !(maxMs >= baseMs)) throw new RangeError("need 0 < baseMs <= maxMs");
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 52));
  return Math.round(step / 2 + random() * (step / 2));
}

/**
 * When to try a delivery again after an attempt failed at `now`, or null to give up: only once at
 * least `giveUpAfterMs` have passed since the event (`firstAt`) and `minAttempts` attempts were
 * made. `attempt` counts the attempts before the one that just failed; a receiver's Retry-After
 * (ms) is honoured as a floor, up to `maxMs`.
 */
export function nextWebhookAttempt(
  task: { attempt: number; firstAt: number },
  now: number,
  options: WebhookBackoffOptions & { retryAfterMs?: number } = {},
): number | null {
  const {
    giveUpAfterMs = WEBHOOK_BACKOFF.giveUpAfterMs,
    minAttempts = WEBHOOK_BACKOFF.minAttempts,
    maxMs = WEBHOOK_BACKOFF.maxMs,
    retryAfterMs = 0,
  } = options;
  const made = task.attempt + 1;
  if (now - task.firstAt >= giveUpAfterMs && made >= minAttempts) return null;
  const delay = Math.max(webhookRetryDelay(made, options), Math.min(retryAfterMs, maxMs));
  return now + delay;
}
