/** Tests of the key-to-slot mapping against values that Redis's CLUSTER KEYSLOT returns. */
import assert from "node:assert/strict";
import { hashedPart, keySlot } from "../../../lib/redis/slot.ts";

Deno.test("keySlot matches CLUSTER KEYSLOT, hash tags included", () => {
  // Each value was read from `CLUSTER KEYSLOT` on redis-server 7.0.
  const cases: [string, number][] = [
    ["foo", 12182],
    ["{user1000}.following", 3443],
    ["héllo", 11061],
    ["a{}b", 13694],
    ["{}{x}", 3257],
    ["{a", 10276],
    ["ab}c{d}", 11298],
  ];
  for (const [key, slot] of cases) assert.equal(keySlot(key), slot, key);
});

Deno.test("keySlot hashes only the first non-empty tag", () => {
  assert.equal(keySlot("img:{p3}jobs"), keySlot("p3"));
  assert.equal(keySlot("{p3}a"), keySlot("{p3}b"));
  assert.equal(keySlot("x{p3}{other}"), keySlot("p3"));
  assert.deepEqual(hashedPart("a{}b"), new TextEncoder().encode("a{}b"));
  assert.equal(keySlot(new TextEncoder().encode("foo")), 12182);
});
