/** The in-process pace: GCRA spacing, 429s that hold every turn, the cut and the climb back, the learned pace. */
import assert from "node:assert/strict";
import { Pacer } from "../../../lib/pace/pacer.ts";

/** Turns granted when asking for one every `stepMs` over `ms`. */
function grantedOver(pacer: Pacer, start: number, ms: number, stepMs = 5): number {
  let granted = 0;
  for (let t = start; t < start + ms; t += stepMs) granted += pacer.take(1, t).granted;
  return granted;
}

Deno.test("a fixed pace grants no more than its rate per second, whoever asks how often", () => {
  const pacer = new Pacer(5);
  // 5/s for 10 s, and the one turn of slack a late ask may use.
  assert.equal(grantedOver(pacer, 1_000_000, 10_000), 51);
  const fast = new Pacer(50);
  // 50/s with a burst of 0.2 s (10 turns) at the start.
  assert.ok(grantedOver(fast, 1_000_000, 10_000, 1) <= 500 + 10);
  assert.ok(grantedOver(new Pacer(50), 1_000_000, 10_000, 1) >= 495);
});

Deno.test("a take reports the wait until the next turn", () => {
  const pacer = new Pacer(4);
  // Two at once (one of slack), then one every 250 ms.
  const first = pacer.take(3, 1_000_000);
  assert.equal(first.granted, 2);
  assert.equal(first.waitMs, 250);
  assert.equal(pacer.take(1, 1_000_100).granted, 0);
  assert.equal(pacer.wait(1_000_100), 150);
  assert.equal(pacer.take(1, 1_000_250).granted, 1);
  assert.equal(pacer.take(1, 1_000_260).granted, 0);
});

Deno.test("a 429 holds every turn for its Retry-After, halves the pace, and the pace climbs back", () => {
  const pacer = new Pacer(10);
  const t0 = 1_000_000;
  pacer.take(1, t0);
  pacer.throttle(2_000, t0);
  assert.equal(pacer.take(1, t0 + 1_999).granted, 0);
  assert.equal(pacer.wait(t0 + 1_000), 1_000);
  assert.equal(pacer.rate(t0 + 2_000), 5);
  // A second 429 of the same burst does not cut again.
  pacer.throttle(100, t0 + 10);
  assert.equal(pacer.rate(t0 + 2_000), 5);
  // Additive increase: 10% of the cut pace per second, back to the cap in 10 s.
  assert.ok(Math.abs(pacer.rate(t0 + 7_000) - 7.5) < 1e-9);
  assert.equal(pacer.rate(t0 + 12_000), 10);
  assert.ok(grantedOver(pacer, t0 + 2_000, 10_000) < 10 * 10);
});

Deno.test("with no fixed pace it sends at will until a 429, then learns from what it sent", () => {
  const pacer = new Pacer(0);
  const t0 = 1_000_000;
  assert.equal(pacer.take(40, t0).granted, 40);
  assert.equal(pacer.rate(t0), 0);
  pacer.throttle(1_000, t0 + 500);
  // 40 went out in that second: the learned pace starts at half of it.
  assert.equal(pacer.rate(t0 + 1_500), 20);
  // Over the next second: 20/s growing by 2/s², plus a burst of 0.2 s' worth.
  const sent = grantedOver(pacer, t0 + 1_500, 1_000, 1);
  assert.ok(sent >= 20 && sent <= 26, `${sent} sent`);
  // Ten minutes without a 429: unpaced again.
  assert.equal(pacer.rate(t0 + 1_500 + 600_000), 0);
});

Deno.test("the placeholder's pace is never paced and ignores 429s", () => {
  const pacer = new Pacer(-1);
  assert.equal(pacer.take(1000, 0).granted, 1000);
  pacer.throttle(60_000, 0);
  assert.equal(pacer.take(5, 1).granted, 5);
  assert.throws(() => new Pacer(-2), RangeError);
});
