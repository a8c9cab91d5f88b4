/** Replays of the Redis relay feeds: a cursor the feed trimmed past, or never handed out, resets. */
import assert from "node:assert/strict";
import { redisCommand } from "../../support/redis_server.ts";
import { newJob } from "./broker_contract_helpers.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

for (const transport of ["tcp", "upstash"] as const) {
  Deno.test({
    name: `${transport}: replay answers null once the feed trimmed items after the cursor`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const fixture = await redisBrokerFixture(transport, 1);
      const { broker, prefix, server } = fixture;
      try {
        await broker.init();
        const { cursor } = await broker.tail(null, { blockMs: 0 });
        await broker.submit(newJob());
        const kept = await broker.submit(newJob());
        const read = await broker.replay(cursor, 10);
        assert.equal(read?.items.length, 2);
        // Nothing trimmed yet: a replay from the first item's id gives the second.
        const first = read!.items[0].cursor;
        assert.deepEqual((await broker.replay(first, 10))?.items.map((i) => i.jobId), [
          kept.job.id,
        ]);
        // The feed keeps only its newest item now: the first item is gone, so both cursors reset.
        const last = read!.items[1].cursor;
        await redisCommand(server.port, ["XTRIM", `${prefix}events`, "MINID", last]);
        assert.equal(await broker.replay(cursor, 10), null);
        assert.equal(await broker.replay(first, 10), null);
        // From the newest item on nothing was lost.
        assert.deepEqual(await broker.replay(last, 10), { cursor: last, items: [] });
      } finally {
        await fixture.cleanup();
      }
    },
  });
}

/** The names of the commands Redis runs while `work` runs, in order (MONITOR on its own connection). */
async function commandOrder(port: number, work: () => Promise<unknown>): Promise<string[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("MONITOR\r\n"));
  const names: string[] = [];
  let ready!: () => void;
  const started = new Promise<void>((resolve) => ready = resolve);
  const reading = (async () => {
    let rest = "";
    try {
      for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split("\r\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          if (line === "+OK") ready();
          const match = /^\+[\d.]+ \[\d+ [^\]]+\] "([^"]+)"/.exec(line);
          if (match) names.push(match[1].toUpperCase());
        }
      }
    } catch {
      // closed below
    }
  })();
  await started;
  await work();
  await redisCommand(port, ["PING"]);
  while (!names.includes("PING")) await new Promise((resolve) => setTimeout(resolve, 5));
  conn.close();
  await reading;
  return names;
}

Deno.test({
  name:
    "replay reads the range before the feed's trim state, so a trim between them shows as a reset",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await redisBrokerFixture("tcp", 1);
    const { broker, server } = fixture;
    try {
      await broker.init();
      const { cursor } = await broker.tail(null, { blockMs: 0 });
      await broker.submit(newJob());
      const names = await commandOrder(server.port, () => broker.replay(cursor, 10));
      const reads = names.filter((name) => name === "XRANGE" || name === "XINFO");
      assert.deepEqual(reads, ["XRANGE", "XINFO"]);
    } finally {
      await fixture.cleanup();
    }
  },
});
