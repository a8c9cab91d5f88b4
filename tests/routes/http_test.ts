/** Tests of the HTTP helpers in routes/http.ts that need no running service. */
import assert from "node:assert/strict";
import { newJobId } from "../../routes/http.ts";

Deno.test("newJobId makes distinct 128-bit ids across refills of its random pool", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 1_000; i++) {
    const id = newJobId();
    assert.match(id, /^[A-Za-z0-9_-]{22}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 1_000);
});
