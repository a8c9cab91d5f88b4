import assert from "node:assert/strict";
import { VerifiedCache } from "../../lib/verified_cache.ts";

Deno.test("VerifiedCache forgets a credential at its expiry and evicts the oldest past its size", () => {
  let now = 1_000;
  const cache = new VerifiedCache<string>({ max: 2, now: () => now });
  cache.set("a", "alice", 2_000);
  cache.set("stale", "nobody", 1_000);
  assert.equal(cache.get("a"), "alice");
  assert.equal(cache.get("stale"), undefined, "an already expired credential is not kept");
  cache.set("b", "bob", 5_000);
  cache.set("c", "carol", 5_000);
  assert.equal(cache.get("a"), undefined, "the oldest entry was evicted");
  assert.deepEqual([cache.get("b"), cache.get("c")], ["bob", "carol"]);
  now = 5_000;
  assert.equal(cache.get("b"), undefined, "gone at its expiry");
  assert.throws(() => new VerifiedCache({ max: 0 }), RangeError);
});
