/** Unit tests of the worker's retry arithmetic. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { retryDelay } from "../../workers/image_worker.ts";

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
