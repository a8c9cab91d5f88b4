/** The interruptible pauses of the polling loops. */
import assert from "node:assert/strict";
import { Wakeable } from "../../lib/pause.ts";

Deno.test("Wakeable keeps a wake-up that came while nothing slept, for the next sleep", async () => {
  const idle = new Wakeable();
  const stop = new AbortController();
  idle.wake(); // a wake-up heard while the loop was reading
  const started = performance.now();
  await idle.sleep(60_000, stop.signal);
  assert.ok(performance.now() - started < 1_000, "the sleep ended at once");
  // Used up: the next sleep waits for a wake-up of its own.
  const sleeping = idle.sleep(60_000, stop.signal);
  let ended = false;
  sleeping.then(() => ended = true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(ended, false);
  idle.wake();
  await sleeping;
});
