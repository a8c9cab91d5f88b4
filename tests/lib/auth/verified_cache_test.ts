/** Tests of the verified-token cache: expiry, size and age bounds, key set changes. */
import assert from "node:assert/strict";
import { VerifiedCache } from "../../../lib/auth/verified_cache.ts";

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

Deno.test("VerifiedCache trusts an entry for maxAgeMs at most, even with a far expiry", () => {
  let now = 0;
  const cache = new VerifiedCache<string>({ maxAgeMs: 5 * 60_000, now: () => now });
  cache.set("month-long", "alice", 30 * 86_400_000);
  now = 5 * 60_000 - 1;
  assert.equal(cache.get("month-long"), "alice");
  now = 5 * 60_000;
  assert.equal(cache.get("month-long"), undefined, "gone after five minutes");
  assert.throws(() => new VerifiedCache({ maxAgeMs: 0 }), RangeError);
});

Deno.test("VerifiedCache drops the tagged entries a key set change no longer allows", () => {
  const cache = new VerifiedCache<string>();
  const far = Date.now() + 60_000;
  cache.set("t1", "alice", far, "key-1");
  cache.set("t2", "bob", far, "key-2");
  cache.set("hs", "carol", far);
  cache.retainTags((kid) => kid === "key-2");
  assert.deepEqual([cache.get("t1"), cache.get("t2"), cache.get("hs")], [
    undefined,
    "bob",
    "carol",
  ]);
});
