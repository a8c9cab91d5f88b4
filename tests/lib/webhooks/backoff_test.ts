import assert from "node:assert/strict";
import fc from "fast-check";
import {
  nextWebhookAttempt,
  WEBHOOK_BACKOFF,
  webhookRetryDelay,
} from "../../../lib/webhooks/backoff.ts";

const HOUR = 3_600_000;

Deno.test("webhookRetryDelay starts within seconds and doubles (equal jitter)", () => {
  const low = { random: () => 0 };
  const high = { random: () => 0.999999 };
  assert.deepEqual([1, 2, 3, 4].map((n) => webhookRetryDelay(n, low)), [500, 1000, 2000, 4000]);
  assert.deepEqual([1, 2, 3, 4].map((n) => webhookRetryDelay(n, high)), [1000, 2000, 4000, 8000]);
});

Deno.test("webhookRetryDelay is capped at 10 minutes however many failures", () => {
  const high = { random: () => 0.999999 };
  assert.equal(webhookRetryDelay(11, high), WEBHOOK_BACKOFF.maxMs);
  assert.equal(webhookRetryDelay(500, high), WEBHOOK_BACKOFF.maxMs);
  assert.equal(webhookRetryDelay(500, { random: () => 0 }), WEBHOOK_BACKOFF.maxMs / 2);
});

Deno.test("webhookRetryDelay stays within [step/2, step] for any failure count", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10_000 }),
      fc.double({ min: 0, max: 0.9999, noNaN: true }),
      (n, r) => {
        const step = Math.min(WEBHOOK_BACKOFF.maxMs, 1000 * 2 ** Math.min(n - 1, 52));
        const delay = webhookRetryDelay(n, { random: () => r });
        return delay >= Math.floor(step / 2) && delay <= step && Number.isFinite(delay);
      },
    ),
  );
});

Deno.test("webhookRetryDelay refuses nonsense with RangeError", () => {
  assert.throws(() => webhookRetryDelay(0), RangeError);
  assert.throws(() => webhookRetryDelay(1.5), RangeError);
  assert.throws(() => webhookRetryDelay(1, { baseMs: 0 }), RangeError);
  assert.throws(() => webhookRetryDelay(1, { baseMs: 10, maxMs: 5 }), RangeError);
});

Deno.test("nextWebhookAttempt gives up only after an hour and enough attempts", async (t) => {
  const firstAt = 1_000_000;
  const fixed = { random: () => 0.5 };
  await t.step("within the hour it retries, however many attempts", () => {
    const next = nextWebhookAttempt({ attempt: 40, firstAt }, firstAt + HOUR - 1, fixed);
    assert.equal(next, firstAt + HOUR - 1 + webhookRetryDelay(41, fixed));
  });
  await t.step("after the hour, too few attempts still retry", () => {
    const now = firstAt + 5 * HOUR; // e.g. every process was down meanwhile
    assert.equal(nextWebhookAttempt({ attempt: 0, firstAt }, now, fixed), now + 750);
    assert.notEqual(nextWebhookAttempt({ attempt: 6, firstAt }, now, fixed), null);
  });
  await t.step("after the hour and minAttempts attempts, it gives up", () => {
    const now = firstAt + HOUR;
    assert.equal(nextWebhookAttempt({ attempt: 7, firstAt }, now, fixed), null);
  });
});

Deno.test("nextWebhookAttempt honours Retry-After as a floor, up to the cap", () => {
  const fixed = { random: () => 0 };
  assert.equal(
    nextWebhookAttempt({ attempt: 0, firstAt: 0 }, 0, { ...fixed, retryAfterMs: 30_000 }),
    30_000,
  );
  assert.equal(
    nextWebhookAttempt({ attempt: 0, firstAt: 0 }, 0, { ...fixed, retryAfterMs: 10 }),
    500,
  );
  assert.equal(
    nextWebhookAttempt({ attempt: 0, firstAt: 0 }, 0, { ...fixed, retryAfterMs: 86_400_000 }),
    WEBHOOK_BACKOFF.maxMs,
  );
});

Deno.test("the default schedule keeps retrying for at least an hour", () => {
  // Walks the schedule with the shortest waits: it must still reach an hour before giving up.
  const low = { random: () => 0 };
  const task = { attempt: 0, firstAt: 0 };
  let now = 0;
  while (true) {
    const next = nextWebhookAttempt(task, now, low);
    if (next === null) break;
    now = next;
    task.attempt++;
  }
  assert.ok(now >= HOUR, `gave up at ${now} ms`);
  assert.ok(task.attempt + 1 >= WEBHOOK_BACKOFF.minAttempts);
  assert.ok(task.attempt < 40, `${task.attempt} attempts`);
});
