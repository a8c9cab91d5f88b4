/** Unit tests of the worker's retry arithmetic (workers/retry.ts). */
import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_RETRY_AFTER_MS } from "../../lib/provider/grok.ts";
import { retryDelay } from "../../workers/retry.ts";

Deno.test("retryDelay draws full jitter below an exponential ceiling, capped", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.double({ min: 0, max: 0.999999, noNaN: true }),
      (attempt, r) => {
        const delay = retryDelay(attempt, { baseMs: 100, maxMs: 5_000, random: () => r });
        const ceiling = Math.min(5_000, 100 * 2 ** (attempt - 1));
        assert.ok(delay >= 0 && delay < ceiling, `${delay} for attempt ${attempt}`);
      },
    ),
  );
  assert.equal(retryDelay(3, { baseMs: 100, maxMs: 5_000, random: () => 0.5 }), 200);
});

Deno.test("retryDelay never waits less than the provider's Retry-After", () => {
  assert.equal(
    retryDelay(1, { baseMs: 100, maxMs: 5_000, retryAfterMs: 3_000, random: () => 0.9 }),
    3_000,
  );
  assert.equal(
    retryDelay(9, { baseMs: 100, maxMs: 5_000, retryAfterMs: 10, random: () => 0.5 }),
    2_500,
  );
});

Deno.test("retryDelay caps the provider's Retry-After and ignores one that is not a wait", async (t) => {
  const options = { baseMs: 100, maxMs: 5_000, random: () => 0.5 };
  await t.step("99999999 seconds waits the cap", () => {
    assert.equal(retryDelay(1, { ...options, retryAfterMs: 99_999_999_000 }), MAX_RETRY_AFTER_MS);
  });
  await t.step("Infinity waits the cap", () => {
    assert.equal(retryDelay(1, { ...options, retryAfterMs: Infinity }), MAX_RETRY_AFTER_MS);
  });
  await t.step("a cap passed as an option", () => {
    assert.equal(retryDelay(1, { ...options, retryAfterMs: 9e9, retryAfterCapMs: 1_234 }), 1_234);
  });
  await t.step("NaN and negative values fall back to the backoff", () => {
    assert.equal(retryDelay(1, { ...options, retryAfterMs: NaN }), 50);
    assert.equal(retryDelay(1, { ...options, retryAfterMs: -5_000 }), 50);
  });
  await t.step("any input gives a finite delay within the cap or the backoff ceiling", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.oneof(fc.double(), fc.constant(undefined)),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (attempt, retryAfterMs, r) => {
          const delay = retryDelay(attempt, {
            baseMs: 1_000,
            maxMs: 60_000,
            retryAfterMs,
            random: () => r,
          });
          assert.ok(Number.isFinite(delay) && delay >= 0, `${delay}`);
          assert.ok(delay <= Math.max(MAX_RETRY_AFTER_MS, 60_000), `${delay}`);
        },
      ),
    );
  });
});
