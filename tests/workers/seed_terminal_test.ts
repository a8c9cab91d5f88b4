/** Terminal outcomes that intake() stores itself are reported once to the terminal hook. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { PROCESSING_ERROR } from "../../lib/live/notifications.ts";
import { createMemoryBroker } from "../../lib/queue/memory.ts";
import type { Outcome } from "../../lib/queue/types.ts";
import { intake } from "../../workers/seed.ts";

Deno.test("a job dead-lettered for too many deliveries is reported to the terminal hook once", async () => {
  const broker = createMemoryBroker();
  try {
    await broker.submit({ id: "j1", owner: "ann", prompt: "a fox" });
    const [delivery] = await broker.claim("w", 1, { blockMs: 0 });
    const reported: [string, Outcome][] = [];
    const deps = {
      broker,
      log: getLogger(["test"]),
      maxAttempts: 1,
      verifyToken: () => Promise.reject(new Error("unused")),
      onTerminal: (id: string, outcome: Outcome) => void reported.push([id, outcome]),
    };
    const signal = new AbortController().signal;
    const worn = { ...delivery, deliveries: 9 };
    assert.equal(await intake(worn, deps, signal), null);
    assert.deepEqual(reported, [["j1", { type: "failed", error: PROCESSING_ERROR }]]);
    assert.equal((await broker.get("j1"))?.status, "failed");
    // The same worn entry again (a redelivery): the job had ended, so nothing more is reported.
    assert.equal(await intake({ ...worn, consumer: "" }, deps, signal), null);
    assert.equal(reported.length, 1);
  } finally {
    await broker.close();
  }
});
