/** The images a process keeps for its own relay: offered only once their write ended the job. */
import assert from "node:assert/strict";
import { RecentImages } from "../../../lib/queue/recent_images.ts";

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
const base64 = (n: number, fill = 1) => bytes(n, fill).toBase64();

Deno.test("a kept image is offered once its write ended the job, waiting for a write under way", async () => {
  const recent = new RecentImages();
  const settle = recent.expect("a", bytes(4));
  const asked = recent.get("a");
  settle(true);
  assert.equal(await asked, base64(4));
  assert.equal(await recent.get("a"), base64(4));
  assert.equal(await recent.get("other"), undefined);
});

Deno.test("the image of a write that did not end the job is never offered", async () => {
  const recent = new RecentImages();
  const settle = recent.expect("a", bytes(4));
  const asked = recent.get("a");
  settle(false);
  assert.equal(await asked, undefined);
  assert.equal(await recent.get("a"), undefined);
  assert.equal(recent.bytes, 0);
});

Deno.test("a later write of the same job replaces the earlier one, whatever the earlier one's end", async () => {
  const recent = new RecentImages();
  const first = recent.expect("a", bytes(4, 1));
  const second = recent.expect("a", bytes(4, 2));
  first(false);
  second(true);
  assert.equal(await recent.get("a"), base64(4, 2));
  assert.equal(recent.bytes, 4);
});

Deno.test("the writer's own base64 is offered as it is, not made again", async () => {
  const recent = new RecentImages();
  recent.expect("a", bytes(4), { base64: "given" })(true);
  assert.equal(await recent.get("a"), "given");
});

Deno.test("kept images are bounded in bytes and in age, oldest first", async () => {
  const recent = new RecentImages({ maxBytes: 10, maxAgeMs: 1_000 });
  recent.expect("a", bytes(4), { now: 0 })(true);
  recent.expect("b", bytes(4), { now: 10 })(true);
  recent.expect("c", bytes(4), { now: 20 })(true);
  assert.equal(await recent.get("a", 20), undefined, "over the byte bound: the oldest went");
  assert.equal(await recent.get("b", 20), base64(4));
  assert.equal(recent.bytes, 8);
  assert.equal(await recent.get("b", 1_010), undefined, "older than the age bound");
  assert.equal(await recent.get("c", 1_010), base64(4));
  recent.expect("huge", bytes(11), { now: 1_010 })(true);
  assert.equal(await recent.get("huge", 1_010), undefined, "larger than the bound alone");
});
